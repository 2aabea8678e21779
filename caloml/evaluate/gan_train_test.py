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

The classifier comes from the reconstruction models: :func:`find_trainer` looks for a function
``train_classifier`` in :data:`TRAINER_MODULE` (the Triforce issue provides it). Its contract,
:data:`TrainClassifier`, is one function::

    train_classifier(samples, *, seed) -> predict
        samples: list of (path, indices, label): showers ``indices`` (sorted int64) of the HDF5 file ``path``
                 (same layout as the evaluated files) with class ``label`` (1 signal, 0 background)
        seed:    seed of every random draw of the training
        predict: predict(path, indices) -> probabilities of the signal class, shape (len(indices),)

so that the classifier streams the files with its own pipeline. When the function is absent, or no background
file is given, or the layout has no reconstruction model (CaloChallenge), the result is
``{"available": false, "reason": ...}`` and the report says why.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["TRAINER_FUNCTION", "TRAINER_MODULE", "Predict", "TrainClassifier", "find_trainer", "gan_train_test"]

#: Where the reconstruction classifier's training function is looked up.
TRAINER_MODULE = "caloml.tasks.triforce"
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
    from sklearn.metrics import roc_auc_score

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
