"""The classifier two-sample test: a Keras network trained to tell generated from reference showers.

If the two samples come from the same distribution, no classifier does better than chance: the area under the ROC
curve (AUC) on held-out data is 0.5. The further the AUC is above 0.5, the easier the generated showers are to
spot. As in the CaloChallenge evaluation:

1. the two classes are balanced (the larger sample is subsampled, seeded) and each is split into training (50%),
   validation (25%) and test (25%) showers;
2. the inputs are standardized with the training split's mean and standard deviation (columns without spread
   are only centred; standardized values are clipped to +-:data:`CLIP` so that a rare cell cannot dominate),
   batch by batch as the network asks for them, so that the splits are never copied;
3. a dense network (:class:`ClassifierSettings`: two hidden layers of 256 leaky-ReLU units with dropout, one
   logit) is trained with Adam on the binary cross-entropy, with early stopping on the validation loss;
4. its outputs are calibrated by Platt scaling fitted on the validation split (:func:`platt_calibration`; isotonic
   regression, the CaloChallenge's choice, overfits validation splits of a few hundred showers and then gives
   probabilities of exactly 0 or 1 that make the divergence estimate meaningless);
5. on the test split: the AUC of the calibrated probabilities (the same as the raw network's unless the
   calibration found no information and returned a constant, AUC 0.5; the raw AUC is kept for information),
   and the Jensen-Shannon divergence estimate JSD = ln 2 - BCE of the calibrated probabilities (nats; between
   0 and ln 2 = 0.693; a lower bound of the true divergence, which a better classifier tightens; a slightly
   negative value is noise around 0).

``repeats`` repeats the whole test (split, initialization, training) with seeds ``seed, seed + 1, ...`` and gives
the mean and the spread (standard deviation) of the AUC and the JSD. The statistical error of one AUC is the
Hanley-McNeil formula for the test sizes. A test needs at least :data:`MIN_EVENTS` showers per file (a test
split of 125 per class, AUC error about 0.04): smaller files are refused with a :class:`CalomlError`.

Why a dense network for both layouts: it is the community's classifier for the CaloChallenge voxels; for the
LCD window (51 x 51 x 25 = 65,025 cells) the cells are first sum-pooled 3 x 3 in x and y
(:data:`caloml.evaluate.features.LCD_POOLING`, 7,225 inputs), which keeps the depth profile and the transverse
shape at 15.3 mm per pooled cell (about 1.4 effective Moliere radii) and makes an epoch of 10,000 showers take
seconds on two CPU cores; the fine transverse structure inside the core is covered by the high-level features
(widths, R9). The network is trained by a plain loop over NumPy batches (:func:`_train`), not ``Model.fit``,
whose fixed cost per epoch dominated tests of a few thousand showers. Keras is imported inside the functions that
train, so that ``python -m caloml.evaluate`` parses its arguments without TensorFlow. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve

from caloml.errors import CalomlError

__all__ = [
    "CLIP",
    "MIN_EVENTS",
    "ClassifierSettings",
    "auc_standard_error",
    "check_classifier_sizes",
    "classifier_two_sample_test",
    "platt_calibration",
    "split_indices",
]

#: Fewest showers per file for a classifier test (25% test split: 125 per class, AUC error about 0.04).
MIN_EVENTS = 500
#: Standardized inputs are clipped to [-CLIP, CLIP].
CLIP = 20.0
#: Fractions of each class in the training, validation and test splits.
SPLIT_FRACTIONS = (0.5, 0.25, 0.25)


@dataclass(frozen=True)
class ClassifierSettings:
    """The classifier network and its training (defaults measured to train in seconds per repeat on 2 cores).

    Attributes:
        hidden_units: units of each hidden layer.
        hidden_layers: number of hidden layers (leaky ReLU, dropout after each).
        dropout: dropout rate.
        learning_rate: Adam learning rate.
        batch_size: training batch size.
        max_epochs: most epochs; training stops earlier when the validation loss has not improved for ``patience``
            epochs, keeping the best weights.
        patience: early-stopping patience (epochs).
    """

    hidden_units: int = 256
    hidden_layers: int = 2
    dropout: float = 0.2
    learning_rate: float = 5e-4
    batch_size: int = 256
    max_epochs: int = 40
    patience: int = 5

    def describe(self) -> str:
        """One line describing the network."""
        return (
            f"dense {self.hidden_layers} x {self.hidden_units} leaky ReLU, dropout {self.dropout}, Adam lr"
            f" {self.learning_rate:g}, batch {self.batch_size}, early stopping (patience {self.patience},"
            f" at most {self.max_epochs} epochs), Platt calibration on the validation split"
        )


def check_classifier_sizes(n_generated: int, n_reference: int, *, generated: str, reference: str) -> None:
    """Raise CalomlError when a file has fewer than :data:`MIN_EVENTS` showers for the classifier test."""
    for n, path in ((n_generated, generated), (n_reference, reference)):
        if n < MIN_EVENTS:
            raise CalomlError(
                f"{path}: {n} showers is too few for the classifier two-sample test, which needs at least"
                f" {MIN_EVENTS} per file (a 25% test split of {MIN_EVENTS // 4} per class); use larger files or"
                " --no-classifier"
            )


def split_indices(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded permutation of ``range(n)`` cut into training, validation and test indices (50/25/25)."""
    order = rng.permutation(n)
    n_train = round(SPLIT_FRACTIONS[0] * n)
    n_val = round(SPLIT_FRACTIONS[1] * n)
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def auc_standard_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Hanley-McNeil standard error of an AUC measured on ``n_positive`` and ``n_negative`` showers."""
    if n_positive < 1 or n_negative < 1:
        return float("nan")
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc**2 / (1.0 + auc)
    variance = (auc * (1 - auc) + (n_positive - 1) * (q1 - auc**2) + (n_negative - 1) * (q2 - auc**2)) / (
        n_positive * n_negative
    )
    return float(math.sqrt(max(variance, 0.0)))


class _Rows:
    """The rows of two input arrays as one sample, without copying: row i < n_gen is ``x_gen[i]``, the others
    ``x_ref[i - n_gen]``; generated rows have label 1, reference rows 0."""

    def __init__(self, x_gen: np.ndarray, x_ref: np.ndarray) -> None:
        self.x_gen = x_gen
        self.x_ref = x_ref
        self.n_gen = len(x_gen)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The inputs of ``rows`` (any order), (len(rows), D) float32."""
        out = np.empty((len(rows), self.x_gen.shape[1]), dtype=np.float32)
        is_gen = rows < self.n_gen
        out[is_gen] = self.x_gen[rows[is_gen]]
        out[~is_gen] = self.x_ref[rows[~is_gen] - self.n_gen]
        return out

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """1 for generated rows, 0 for reference rows, float32."""
        return (rows < self.n_gen).astype(np.float32)


class _Standardizer:
    """(x - mean) / std of the training rows, clipped to +-:data:`CLIP`; columns without spread are only centred."""

    def __init__(self, data: _Rows, rows: np.ndarray, block: int = 1024) -> None:
        width = data.x_gen.shape[1]
        total = np.zeros(width)
        total_square = np.zeros(width)
        for start in range(0, len(rows), block):  # blocks: no copy of the whole training split
            x = data.take(rows[start : start + block]).astype(np.float64)
            total += x.sum(axis=0)
            total_square += (x**2).sum(axis=0)
        mean = total / len(rows)
        std = np.sqrt(np.maximum(total_square / len(rows) - mean**2, 0.0))
        self.mean = mean.astype(np.float32)
        spread = (std > 0) & (std > 1e-6 * np.abs(mean))  # not rounding noise of a constant column
        self.scale = np.where(spread, std, 1.0).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x -= self.mean
        x /= self.scale
        return np.clip(x, -CLIP, CLIP, out=x)


def _build_model(n_inputs: int, settings: ClassifierSettings):
    import keras

    inputs = keras.Input((n_inputs,), name="features")
    hidden = inputs
    for _ in range(settings.hidden_layers):
        hidden = keras.layers.Dense(settings.hidden_units, activation="leaky_relu")(hidden)
        hidden = keras.layers.Dropout(settings.dropout)(hidden)
    logit = keras.layers.Dense(1, name="logit")(hidden)
    return keras.Model(inputs, logit, name="two_sample_classifier")


def _batches(data: _Rows, rows: np.ndarray, transform: _Standardizer, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), batch_size):
        yield transform(data.take(rows[start : start + batch_size]))


def _train(
    model,
    data: _Rows,
    train: np.ndarray,
    val: np.ndarray,
    transform: _Standardizer,
    settings: ClassifierSettings,
    rng: np.random.Generator,
) -> list[float]:
    """Train ``model`` with Adam on the binary cross-entropy, early-stopped on the validation loss.

    A plain loop over NumPy batches with one compiled step: Keras' ``fit`` costs a few tenths of a second per
    epoch on top of the work, which is most of the time of a test on a few thousand showers. The training rows
    are reshuffled every epoch (``rng``); the best weights are restored. Returns the validation loss per epoch.
    """
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(settings.learning_rate)
    optimizer.build(model.trainable_variables)
    loss_function = keras.losses.BinaryCrossentropy(from_logits=True)
    signature = (tf.TensorSpec((None, data.x_gen.shape[1]), tf.float32), tf.TensorSpec((None,), tf.float32))

    @tf.function(input_signature=signature, autograph=False)  # no Python control flow to convert
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_function(y[:, None], model(x, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    @tf.function(input_signature=signature, autograph=False)  # no Python control flow to convert
    def summed_loss(x, y):
        return loss_function(y[:, None], model(x, training=False)) * tf.cast(tf.shape(y)[0], tf.float32)

    history: list[float] = []
    best, best_weights, waited = math.inf, model.get_weights(), 0
    for _ in range(settings.max_epochs):
        order = rng.permutation(train)
        for start in range(0, len(order), settings.batch_size):
            pick = order[start : start + settings.batch_size]
            step(transform(data.take(pick)), data.labels(pick))
        total = 0.0
        for start in range(0, len(val), 4 * settings.batch_size):
            pick = val[start : start + 4 * settings.batch_size]
            total += float(summed_loss(transform(data.take(pick)), data.labels(pick)))
        history.append(total / len(val))
        if history[-1] < best:
            best, best_weights, waited = history[-1], model.get_weights(), 0
        else:
            waited += 1
            if waited >= settings.patience:
                break
    model.set_weights(best_weights)
    return history


def _logits(model, data: _Rows, rows: np.ndarray, transform: _Standardizer, batch_size: int) -> np.ndarray:
    outputs = [np.asarray(model(x, training=False)) for x in _batches(data, rows, transform, batch_size)]
    return np.concatenate(outputs).astype(np.float64).reshape(-1)


def platt_calibration(logit_val: np.ndarray, y_val: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Platt scaling fitted on the validation split: p = sigmoid(a * logit + b) with a >= 0.

    A fitted slope a <= 0 can only come from noise (the network was trained to give the generated showers the
    larger logit), so it is replaced by the constant probability of the validation labels, which is what a
    classifier without information predicts.
    """
    fit = LogisticRegression(C=1e6).fit(logit_val.reshape(-1, 1), y_val)
    slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if slope <= 0:
        constant = float(np.mean(y_val))
        return lambda logit: np.full(np.shape(logit), constant)
    return lambda logit: 1.0 / (1.0 + np.exp(-(slope * np.asarray(logit, dtype=np.float64) + intercept)))


def _one_repeat(data: _Rows, seed: int, settings: ClassifierSettings) -> dict[str, Any]:
    import keras

    rng = np.random.default_rng(seed)
    n_gen, n_ref = data.n_gen, len(data.x_ref)
    n = min(n_gen, n_ref)
    pick_gen = np.sort(rng.choice(n_gen, n, replace=False)) if n_gen > n else np.arange(n)
    pick_ref = np.sort(rng.choice(n_ref, n, replace=False)) if n_ref > n else np.arange(n)
    split_gen = split_indices(n, rng)
    split_ref = split_indices(n, rng)
    train, val, test = (
        np.concatenate([pick_gen[g], n_gen + pick_ref[r]]) for g, r in zip(split_gen, split_ref, strict=True)
    )
    transform = _Standardizer(data, train)

    keras.utils.set_random_seed(seed)
    model = _build_model(data.x_gen.shape[1], settings)
    val_losses = _train(model, data, train, val, transform, settings, rng)
    batch = 4 * settings.batch_size
    logit_val = _logits(model, data, val, transform, batch)
    logit_test = _logits(model, data, test, transform, batch)
    y_val, y_test = data.labels(val), data.labels(test)
    calibrate = platt_calibration(logit_val, y_val)
    p_test = np.clip(calibrate(logit_test), 1e-7, 1.0 - 1e-7)
    auc = float(roc_auc_score(y_test, p_test))
    auc_raw = float(roc_auc_score(y_test, logit_test))
    bce = float(-np.mean(y_test * np.log(p_test) + (1.0 - y_test) * np.log(1.0 - p_test)))
    fpr, tpr, _ = roc_curve(y_test, logit_test)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))
    n_test = int(y_test.sum())
    return {
        "seed": seed,
        "auc": auc,
        "auc_uncalibrated": auc_raw,
        "auc_stat_error": auc_standard_error(auc, n_test, len(y_test) - n_test),
        "jsd_nats": math.log(2.0) - bce,
        "epochs": len(val_losses),
        "best_val_loss": float(min(val_losses)),
        "sizes_per_class": {"train": len(split_gen[0]), "validation": len(split_gen[1]), "test": len(split_gen[2])},
        "roc": {"false_positive_rate": fpr[keep].tolist(), "true_positive_rate": tpr[keep].tolist()},
    }


def _spread(values: Sequence[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def classifier_two_sample_test(
    x_generated: np.ndarray,
    x_reference: np.ndarray,
    *,
    seed: int = 1,
    repeats: int = 1,
    settings: ClassifierSettings | None = None,
) -> dict:
    """Run the test (module docstring) on inputs ``x_generated`` (N1, D) and ``x_reference`` (N2, D).

    Returns a JSON-ready dict: ``auc`` (mean over the repeats of the calibrated test AUC), ``auc_std`` (spread
    over the repeats; None for one repeat), ``auc_stat_error``, ``jsd_nats`` and ``jsd_std``, the per-repeat
    ``runs`` (seed, AUCs, JSD, epochs, split sizes, a ROC curve of the raw outputs), ``network`` and ``settings``.
    """
    settings = settings or ClassifierSettings()
    if repeats < 1:
        raise CalomlError(f"repeats must be at least 1, got {repeats}")
    x_generated = np.asarray(x_generated, dtype=np.float32)
    x_reference = np.asarray(x_reference, dtype=np.float32)
    if x_generated.ndim != 2 or x_reference.ndim != 2 or x_generated.shape[1] != x_reference.shape[1]:
        raise CalomlError(f"classifier inputs of shapes {x_generated.shape} and {x_reference.shape} do not match")
    if min(len(x_generated), len(x_reference)) < MIN_EVENTS:
        raise CalomlError(
            f"{min(len(x_generated), len(x_reference))} showers is too few for the classifier two-sample test"
            f" (at least {MIN_EVENTS} per sample)"
        )
    data = _Rows(x_generated, x_reference)
    runs = [_one_repeat(data, seed + r, settings) for r in range(repeats)]
    aucs = [float(run["auc"]) for run in runs]  # type: ignore[arg-type]
    jsds = [float(run["jsd_nats"]) for run in runs]  # type: ignore[arg-type]
    return {
        "auc": float(np.mean(aucs)),
        "auc_std": _spread(aucs),
        "auc_stat_error": float(np.mean([run["auc_stat_error"] for run in runs])),  # type: ignore[misc]
        "auc_uncalibrated": float(np.mean([run["auc_uncalibrated"] for run in runs])),  # type: ignore[misc]
        "jsd_nats": float(np.mean(jsds)),
        "jsd_std": _spread(jsds),
        "repeats": repeats,
        "n_inputs": int(x_reference.shape[1]),
        "network": settings.describe(),
        "settings": asdict(settings),
        "runs": runs,
    }
