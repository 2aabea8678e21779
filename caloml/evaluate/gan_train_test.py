"""GAN-train / GAN-test through a reconstruction classifier (3DGAN paper, section 8).

A particle-identification network (the Triforce e vs pi+- classifier) is trained twice: on the *reference*
signal showers and on the *generated* ones, each time against the same background showers (for example simulated
charged pions, ``--background``); each network is then tested on held-out reference and generated signal showers
against held-out background. The four accuracies form the paper's Table 3:

================================  =======================  =======================
trained on                        accuracy, reference test  accuracy, generated test
================================  =======================  =======================
reference signal                  (baseline)               GAN-test
generated signal                  GAN-train                 -
================================  =======================  =======================

GAN-train close to the baseline means the generated showers cover the reference distribution (no dropped
modes); GAN-test close to it means they look realistic to a network that never saw them.

The classifier is :func:`train_classifier` (a small Triforce DNN on the ECAL only), found by :func:`find_trainer`
in :data:`TRAINER_MODULE`; any function of the contract :data:`TrainClassifier` can replace it::

    train_classifier(samples, *, seed) -> predict
        samples: list of (path, indices, label): showers ``indices`` (sorted int64) of the HDF5 file ``path``
                 (same layout as the evaluated files) with class ``label`` (1 signal, 0 background)
        seed:    seed of every random draw of the training
        predict: predict(path, indices) -> probabilities of the signal class, shape (len(indices),)

so that the classifier streams the files with its own pipeline. When the function is absent, or no background
file is given, or the layout has no reconstruction model (CaloChallenge), the result is
``{"available": false, "reason": ...}`` and the report says why. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from caloml.data.lcd import LCDReader
from caloml.data.reconstruction import sum_cells
from caloml.errors import CalomlError

__all__ = [
    "CLASSIFIER_SETTINGS",
    "TRAINER_FUNCTION",
    "TRAINER_MODULE",
    "Predict",
    "TrainClassifier",
    "ecal_only_inputs",
    "find_trainer",
    "gan_train_test",
    "train_classifier",
]

#: Where the reconstruction classifier's training function is looked up.
TRAINER_MODULE = "caloml.evaluate.gan_train_test"
#: Its name.
TRAINER_FUNCTION = "train_classifier"

Sample = tuple[Path, np.ndarray, int]
Predict = Callable[[Path, np.ndarray], np.ndarray]
TrainClassifier = Callable[..., Predict]
"""``train_classifier(samples: list[Sample], *, seed: int) -> Predict`` (see the module docstring)."""


def find_trainer() -> tuple[TrainClassifier | None, str]:
    """The reconstruction classifier's training function and where it came from, or None and why it is absent."""
    try:
        module = importlib.import_module(TRAINER_MODULE)
    except ModuleNotFoundError as error:
        if error.name is not None and TRAINER_MODULE.startswith(error.name):
            return None, f"{TRAINER_MODULE} does not exist yet (the Triforce reconstruction models have not landed)"
        raise
    function = getattr(module, TRAINER_FUNCTION, None)
    if not callable(function):
        return None, f"{TRAINER_MODULE} has no function {TRAINER_FUNCTION}"
    return function, f"{TRAINER_MODULE}.{TRAINER_FUNCTION}"


def _halves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def _score(predict: Predict, signal: tuple[Path, np.ndarray], background: tuple[Path, np.ndarray]) -> dict:
    p_signal = np.asarray(predict(*signal), dtype=np.float64).reshape(-1)
    p_background = np.asarray(predict(*background), dtype=np.float64).reshape(-1)
    if p_signal.shape != (len(signal[1]),) or p_background.shape != (len(background[1]),):
        raise ValueError("the classifier's predict returned the wrong number of probabilities")
    labels = np.concatenate([np.ones(p_signal.size), np.zeros(p_background.size)])
    scores = np.concatenate([p_signal, p_background])
    accuracy = float(np.mean((scores >= 0.5) == (labels == 1)))
    n = labels.size
    return {
        "accuracy": accuracy,
        "accuracy_error": math.sqrt(accuracy * (1 - accuracy) / n),
        "auc": float(roc_auc_score(labels, scores)),
        "n_test": int(n),
    }


def gan_train_test(
    generated: Path,
    reference: Path,
    background: Path | None,
    *,
    n_generated: int,
    n_reference: int,
    n_background: int,
    layout: str,
    seed: int,
    trainer: TrainClassifier | None = None,
    trainer_name: str | None = None,
) -> dict:
    """Run GAN-train / GAN-test (module docstring) or say why it cannot run.

    Each file is split in two seeded halves, the first for training and the second for testing. ``trainer``
    overrides the lookup of :func:`find_trainer` (tests and notebooks plug their own classifier in this way).
    Returns a JSON-ready dict with ``available``, and either ``reason`` or the four results (``accuracy``,
    ``accuracy_error``, ``auc``, ``n_test``) under ``trained_on_reference`` / ``trained_on_generated`` x
    ``tested_on_reference`` / ``tested_on_generated``, plus ``gan_train`` and ``gan_test`` (accuracies) and
    ``baseline`` (trained and tested on the reference).
    """
    if layout != "lcd":
        return {
            "available": False,
            "reason": f"no reconstruction classifier for the {layout} layout (Triforce works on LCD showers)",
        }
    if trainer is None:
        trainer, found = find_trainer()
        if trainer is None:
            return {"available": False, "reason": found}
        trainer_name = found
    if background is None:
        return {
            "available": False,
            "reason": "no background file: GAN-train / GAN-test needs --background (showers of the other class, for"
            " example simulated charged pions, in the same layout)",
        }
    rng = np.random.default_rng(seed)
    gen_train, gen_test = _halves(n_generated, rng)
    ref_train, ref_test = _halves(n_reference, rng)
    bkg_train, bkg_test = _halves(n_background, rng)
    background_test = (background, bkg_test)
    results: dict = {"available": True, "classifier": trainer_name or getattr(trainer, "__name__", "custom")}
    for trained_on, path, train_indices in (
        ("reference", reference, ref_train),
        ("generated", generated, gen_train),
    ):
        samples: Sequence[Sample] = [(path, train_indices, 1), (background, bkg_train, 0)]
        predict = trainer(list(samples), seed=seed)
        results[f"trained_on_{trained_on}"] = {
            "tested_on_reference": _score(predict, (reference, ref_test), background_test),
            "tested_on_generated": _score(predict, (generated, gen_test), background_test),
        }
    results["baseline"] = results["trained_on_reference"]["tested_on_reference"]["accuracy"]
    results["gan_test"] = results["trained_on_reference"]["tested_on_generated"]["accuracy"]
    results["gan_train"] = results["trained_on_generated"]["tested_on_reference"]["accuracy"]
    results["n_train"] = {"generated": len(gen_train), "reference": len(ref_train), "background": len(bkg_train)}
    return results


# ------------------------------------------------------------------------------------------ the classifier
#: Training of :func:`train_classifier`: a small DNN, a few epochs (it runs inside the generator evaluation).
CLASSIFIER_SETTINGS: dict[str, Any] = {
    "n_hidden_layers": 2,
    "hidden_units": 64,
    "dropout": 0.04,
    "learning_rate": 1e-3,
    "epochs": 6,
    "batch_size": 64,
}
#: Events per read and per prediction batch.
_PREDICT_BATCH = 256


def ecal_only_inputs(path: Path, indices: np.ndarray) -> dict[str, np.ndarray]:
    """ECAL-only classifier inputs of the events ``indices`` of an LCD file: the ECAL centre-cropped to 25 x 25 x 25
    and ``ECAL_E``, the sum of the **cropped** cells (GeV), so that every file gets the same definition whatever
    window it stores (51 x 51 x 25 or 25 x 25 x 25); any stored ``ECAL_E`` is ignored."""
    # lazy: the Triforce pipeline imports TensorFlow, and python -m caloml.evaluate parses without it
    from caloml.tasks.triforce.data import EVENT_SIGNATURE, HCAL_SHAPE, READ_CHUNK, model_inputs_numpy

    indices = np.asarray(indices, dtype=np.int64)
    with LCDReader(path, keys=["ECAL", "energy"], chunk_events=READ_CHUNK) as reader:
        parts = [
            model_inputs_numpy(reader.read(indices[i : i + _PREDICT_BATCH]))
            for i in range(0, len(indices), _PREDICT_BATCH)
        ]
    if not parts:
        return {key: np.zeros((0, *spec.shape[1:]), np.float32) for key, spec in EVENT_SIGNATURE.items()}
    events = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    # the same inputs for every file, whatever it holds: no HCAL, no reconstructed angles (a generator's files
    # have neither), the ECAL sum of the cropped window (the same cells in every file)
    n = len(indices)
    events["ECAL_E"] = sum_cells(events["ECAL"])
    events["HCAL"] = np.zeros((n, *HCAL_SHAPE), np.float32)
    events["HCAL_E"] = np.zeros(n, np.float32)
    events["recoEta"] = np.zeros(n, np.float32)
    events["recoPhi"] = np.zeros(n, np.float32)
    return events


def train_classifier(
    samples: Sequence[tuple[Path, np.ndarray, int]], *, seed: int, epochs: int | None = None
) -> Callable[[Path, np.ndarray], np.ndarray]:
    """Train the GAN-train / GAN-test classifier (contract :data:`TrainClassifier`, module docstring).

    ``samples``: ``(path, indices, label)`` with label 1 (signal) or 0 (background), events of LCD-layout HDF5
    files (``lcd-gen`` or ``lcd-rec``, full or cropped ECAL). The network is a small
    :class:`~caloml.models.triforce_nets.TriforceDNN` (:data:`CLASSIFIER_SETTINGS`) on the **ECAL only**: the
    centre-cropped 25 x 25 x 25 cells and their sum (of the cropped cells, the same definition for a 51 x 51 x 25 and a
    25 x 25 x 25 file); the HCAL, its sum and the reconstructed angles are set to
    zero for every file, because generated files (the 3DGAN's) have none of them and a classifier must see the same
    inputs in all its files. The class comes from the sample's label, not from ``pdgID``, and no task filter is
    applied (the files are the evaluation's). Classification only (energy-loss weight 0). Seeded: initializers,
    dropout and the event order follow ``seed``.

    Returns ``predict(path, indices) -> (len(indices),)`` float64 probabilities of the signal class.
    """
    # lazy: Keras and the networks import TensorFlow, and python -m caloml.evaluate parses without it
    import keras
    import tensorflow as tf

    from caloml.models.triforce_nets import TriforceDNN

    settings = CLASSIFIER_SETTINGS
    if not samples:
        raise CalomlError("train_classifier: no training samples")
    labels_seen = {int(label) for _, _, label in samples}
    if labels_seen != {0, 1}:
        raise CalomlError(f"train_classifier: needs samples of both labels 0 and 1, got {sorted(labels_seen)}")
    parts = []
    for path, indices, label in samples:
        events = ecal_only_inputs(Path(path), indices)
        events["class_label"] = np.full(len(indices), int(label), np.int32)
        parts.append(events)
    data = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    n = len(data["class_label"])
    model = TriforceDNN(
        settings["n_hidden_layers"],
        settings["hidden_units"],
        settings["dropout"],
        energy_loss_weight=0.0,
        seed=seed,
    )
    model.compile(keras.optimizers.Adam(settings["learning_rate"]))
    dataset = (
        tf.data.Dataset.from_tensor_slices(data)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(settings["batch_size"])
    )
    model.fit(dataset, epochs=int(epochs or settings["epochs"]), verbose=0, shuffle=False)

    @tf.function(reduce_retracing=True)
    def probability(batch: dict[str, tf.Tensor]) -> tf.Tensor:
        return model(model.select_inputs(batch), training=False)["class_probability"][:, 1]

    def predict(path: Path, indices: np.ndarray) -> np.ndarray:
        events = ecal_only_inputs(Path(path), indices)
        out = [
            probability({k: v[i : i + _PREDICT_BATCH] for k, v in events.items()}).numpy()
            for i in range(0, len(events["ECAL"]), _PREDICT_BATCH)
        ]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    return predict
