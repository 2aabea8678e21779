"""How a trained 3DGAN generator reacts to bfloat16: the check behind its float32 tail.

``python -m caloml.evaluate precision --model RUN --out DIR [-n 32] [--seed 1] [--draws 6]`` generates ``-n``
showers from the same conditions and noise (i) in float32, (ii) in bfloat16 with the float32 tail starting at each
of :data:`TAIL_BOUNDARIES` (``none``: every layer in bfloat16; ``batchnorm_4``: the shipped generator) and (iii) in
float32 with the weights perturbed at random by bfloat16's rounding size (``--draws`` draws: each kernel and bias
value gets the rounding error of another value of its tensor, with a random sign). For each it reports, shower by
shower against float32, the mean relative change of the total energy and of the number of hit cells with its
standard error, and the generator's time per shower. The weight draws show how ill-conditioned the total energy is
in the weights; the boundaries show where bfloat16 must stop for the energy scale to hold. Conditions are drawn
uniformly in the trained ranges from ``--seed``. bfloat16 is computed even on a machine without bfloat16 units
(emulated, slowly): the rounding, not the speed, is what is measured. Writes ``precision.json`` into ``--out``. See
``docs/3dgan.md`` (Precision).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from caloml.atomic_files import atomic_write_json
from caloml.cli_args import non_negative_seed, output_directory, positive_int
from caloml.errors import CalomlError
from caloml.evaluate.features import HIT_THRESHOLD_GEV
from caloml.json_values import json_plain
from caloml.report_directory import check_report_dir, report_dir

__all__ = ["TAIL_BOUNDARIES", "add_precision_parser", "precision_sensitivity", "run_precision"]

#: First float32 layer of each bfloat16 variant, from "every layer in bfloat16" to "only the first blocks".
TAIL_BOUNDARIES: tuple[str, ...] = (
    "none",
    "conv_7",
    "relu_6",
    "conv_6",
    "batchnorm_5",
    "conv_5",
    "batchnorm_4",
    "conv_4",
    "conv_3",
)

_WHAT = "precision report"


def precision_sensitivity(
    model: Any,
    n_showers: int = 32,
    *,
    seed: int = 1,
    draws: int = 6,
    boundaries: Sequence[str] = TAIL_BOUNDARIES,
) -> dict[str, Any]:
    """The precision check of a :class:`caloml.models.gan3d.GAN3D` (see the module docstring).

    Returns ``{"float32": {...}, "bfloat16": [{"float32_from": B, ...}], "weight_draws": [{...}], "shipped_tail":
    B}`` where each entry has ``energy_change`` and ``hits_change`` (mean relative change shower by shower against
    float32, and ``..._error`` its standard error) and ``ms_per_shower`` (the second call, after tracing; this machine).
    """
    import tensorflow as tf  # lazy: the command line parses its arguments without TensorFlow

    from caloml.models.gan3d_generator import Generator3D
    from caloml.models.precision import dtype_policy

    if n_showers < 2:
        raise CalomlError(f"the precision check needs at least 2 showers, got {n_showers}")
    rng = np.random.default_rng(seed)
    energy_low, energy_high = model.energy_range_gev
    angle_low, angle_high = model.theta_range_rad
    energy = rng.uniform(energy_low, energy_high, (n_showers, 1)).astype(np.float32)
    angle = rng.uniform(angle_low, angle_high, (n_showers, 1)).astype(np.float32)
    noise = rng.standard_normal((n_showers, model.noise_size)).astype(np.float32)
    inputs = [energy / np.float32(model.energy_scale_gev), angle, noise]

    def showers(generator: Any) -> tuple[np.ndarray, float]:
        run = tf.function(lambda: model.inverse_power(tf.cast(generator(inputs, training=False), tf.float32)))
        cells = np.asarray(run(), dtype=np.float64)  # the first call traces
        started = time.perf_counter()
        run()
        return cells.reshape(n_showers, -1), 1e3 * (time.perf_counter() - started) / n_showers

    def rebuilt(policy: str, **overrides: Any) -> Any:
        with dtype_policy(policy, for_this_machine=False):
            copy = Generator3D.from_config({**model.generator.get_config(), **overrides})
        copy.set_weights(model.generator.get_weights())
        return copy

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # one traced function per variant is the point here, not a retracing mistake
    try:
        return _compare(model, showers, rebuilt, n_showers, seed, draws, boundaries)
    finally:
        logger.setLevel(level)


def _compare(
    model: Any, showers: Any, rebuilt: Any, n_showers: int, seed: int, draws: int, boundaries: Sequence[str]
) -> dict[str, Any]:
    """The body of :func:`precision_sensitivity`: ``showers(generator)`` -> (cells (N, cells) GeV, ms per shower),
    ``rebuilt(policy, **config)`` -> a copy of the generator with the same weights."""
    import keras  # lazy, as in precision_sensitivity
    import tensorflow as tf

    from caloml.models.gan3d_generator import FLOAT32_TAIL_FROM

    reference, reference_ms = showers(model.generator)
    reference_energy = reference.sum(axis=1)
    reference_hits = (reference > HIT_THRESHOLD_GEV).sum(axis=1)
    if np.any(reference_energy <= 0) or np.any(reference_hits == 0):
        raise CalomlError("the generator makes empty showers at these conditions: its precision cannot be judged")

    def changes(cells: np.ndarray, ms: float) -> dict[str, float]:
        energy_ratio = cells.sum(axis=1) / reference_energy - 1.0
        hits_ratio = (cells > HIT_THRESHOLD_GEV).sum(axis=1) / reference_hits - 1.0
        error = np.sqrt(n_showers)
        return {
            "energy_change": float(energy_ratio.mean()),
            "energy_change_error": float(energy_ratio.std(ddof=1) / error),
            "hits_change": float(hits_ratio.mean()),
            "hits_change_error": float(hits_ratio.std(ddof=1) / error),
            "ms_per_shower": ms,
        }

    variants = []
    for boundary in boundaries:
        generator = rebuilt("mixed_bfloat16", float32_tail=False)
        names = [layer.name for layer in generator.layers if not isinstance(layer, keras.layers.InputLayer)]
        if boundary != "none":
            if boundary not in names:
                raise CalomlError(f"unknown layer {boundary!r}; the generator's layers are {', '.join(names)}")
            for layer in generator.layers[[layer.name for layer in generator.layers].index(boundary) :]:
                layer.dtype_policy = keras.DTypePolicy("float32")  # float32 is right in any guarded form
        variants.append({"float32_from": boundary, **changes(*showers(generator))})

    weight_draws = []
    draw_rng = np.random.default_rng([seed, 1])
    weights = model.generator.get_weights()
    rounded = [variable.path.rsplit("/", 1)[-1] in ("kernel", "bias") for variable in model.generator.weights]
    for draw in range(draws):
        perturbed = rebuilt("float32")
        moved = []
        for value, is_rounded in zip(weights, rounded, strict=True):
            if not is_rounded:  # batch normalization stays float32 in bfloat16 too
                moved.append(value)
                continue
            rounding = np.asarray(tf.cast(tf.cast(value, tf.bfloat16), tf.float32)) - value
            sign = draw_rng.choice(np.array([-1.0, 1.0], np.float32), value.shape)
            moved.append(value + draw_rng.permutation(rounding.ravel()).reshape(value.shape) * sign)
        perturbed.set_weights(moved)
        weight_draws.append({"draw": draw, **changes(*showers(perturbed))})

    return json_plain(
        {
            "n_showers": n_showers,
            "seed": seed,
            "hit_threshold_gev": HIT_THRESHOLD_GEV,
            "shipped_tail": FLOAT32_TAIL_FROM,
            "float32": {"ms_per_shower": reference_ms},
            "bfloat16": variants,
            "weight_draws": weight_draws,
        }
    )


def _table(record: dict[str, Any]) -> str:
    def percent(entry: dict[str, Any], key: str) -> str:
        return f"{100 * entry[key]:+7.2f} +- {100 * entry[key + '_error']:.2f}%"

    lines = [f"{'variant':<44} {'total energy':>18} {'hit cells':>18} {'ms/shower':>10}"]
    lines.append(f"{'float32 (reference)':<44} {'':>18} {'':>18} {record['float32']['ms_per_shower']:10.1f}")
    for entry in record["bfloat16"]:
        boundary = entry["float32_from"]
        name = "bfloat16 everywhere" if boundary == "none" else f"bfloat16, float32 from {boundary}"
        if boundary == record["shipped_tail"]:
            name += " (shipped)"
        lines.append(
            f"{name:<44} {percent(entry, 'energy_change'):>18} {percent(entry, 'hits_change'):>18}"
            f" {entry['ms_per_shower']:10.1f}"
        )
    for entry in record["weight_draws"]:
        lines.append(
            f"{'float32, weights moved, draw ' + str(entry['draw']):<44} {percent(entry, 'energy_change'):>18}"
            f" {percent(entry, 'hits_change'):>18} {entry['ms_per_shower']:10.1f}"
        )
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------------------------------
def add_precision_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``precision``: how a trained 3DGAN generator reacts to bfloat16."""
    parser = subparsers.add_parser(
        "precision",
        help="how a trained 3DGAN generator reacts to bfloat16 (the check behind its float32 tail)",
        description=(
            "Generate the same showers in float32, in bfloat16 with the float32 tail starting at each candidate layer,"
            " and in float32 with the weights moved at random by bfloat16's rounding size; report the change of the"
            " total energy and of the hit cells, shower by shower, and the time per shower. Writes precision.json."
        ),
    )
    parser.add_argument("--model", required=True, type=Path, metavar="PATH", help="run directory or .keras file")
    parser.add_argument("--out", required=True, type=output_directory, metavar="DIR", help="report directory")
    parser.add_argument("-n", "--showers", type=positive_int, default=32, help="showers per variant (default 32)")
    parser.add_argument("--seed", type=non_negative_seed, default=1, help="seed of every random draw (default 1)")
    parser.add_argument("--draws", type=int, default=6, help="random weight perturbations (default 6)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    return parser


def run_precision(args: argparse.Namespace) -> int:
    """Run the precision check of ``args.model`` and print its table."""
    from caloml.generate.trained_model import load_trained_model  # lazy: imports TensorFlow
    from caloml.models.gan3d import GAN3D

    if args.draws < 0:
        raise CalomlError(f"--draws must be 0 or more, got {args.draws}")
    check_report_dir(args.out, args.overwrite, _WHAT)
    trained = load_trained_model(args.model, GAN3D)
    record = precision_sensitivity(trained.model, args.showers, seed=args.seed, draws=args.draws)
    record = {"model": trained.provenance(), **record}
    with report_dir(args.out, args.overwrite, _WHAT) as folder:
        atomic_write_json(folder / "precision.json", record)
    print(_table(record))
    print(f"precision report: {Path(args.out) / 'precision.json'}")
    return 0
