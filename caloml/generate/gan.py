"""Generating showers with a trained 3DGAN into the LCD generation layout, the files the simulator writes.

The generated file has the keys of the simulator's ``lcd-gen`` files that a generator can fill, in the same units
(written with :class:`caloml.data.lcd.LCDWriter`: cells and sums stored as 50 x GeV), so that every reader,
observable and evaluation applies unchanged:

==========  =======================  ==================================================================
key         shape, dtype             meaning
==========  =======================  ==================================================================
``ECAL``    (N, 51, 51, 25) float32  the generated cells, GeV in memory (stored 50 x GeV)
``energy``  (N,) float32             primary energy the shower was generated for, GeV
``theta``   (N,) float32             true incidence angle the shower was generated for, radians (*)
``eta``     (N,) float32             pseudorapidity of ``theta``, -ln tan(theta / 2) (*)
``mtheta``  (N,) float32             angle measured on the generated shower (``measured_angle``), radians
``pdgID``   (N,) int32               PDG code of the model's particle
``ECAL_E``  (N,) float32             sum of the cells, GeV in memory (stored 50 x GeV)
==========  =======================  ==================================================================

(*) The angle condition is of the kind the model was trained with (``GAN3D.condition_angle``). A model conditioned
on the true angle (``"theta"``) gets ``theta`` and ``eta`` as above. A model conditioned on the measured angle
(``"mtheta"``, the paper's choice) is asked for a measured angle, which is stored as ``mtheta_condition`` (N,)
radians instead: the true angle of such a shower is unknown, and ``mtheta`` stays the angle measured on the
generated image (for a good model, close to ``mtheta_condition``). Either way ``mtheta`` compares directly with
the simulator's files.

The simulator's other keys (HCAL, phi, reconstructed angles, opening angle, conversion) describe things the GAN
does not generate and are left out (they are optional in the layout).

Random draws: energies uniform in the requested range (a fixed energy when both ends are equal), angles uniform in
the requested range, noise standard normal; each from its own stream spawned from the seed and drawn in event
order, so a file depends on the seed and the request, not on the batch size. Showers are generated and written
one batch at a time: memory holds one batch, never the whole file.

See ``docs/3dgan.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import caloml
from caloml.cli_args import check_memory, non_negative_seed, output_file, parse_angle, positive_int
from caloml.data.hdf5 import provenance_attrs
from caloml.data.lcd import LCDWriter
from caloml.errors import CalomlError, OutputExistsError
from caloml.generate.exported_model import is_export
from caloml.generate.trained_model import load_trained_model, resolve_model_file
from caloml.observables.angle import measured_angle
from caloml.progress import progress_bar
from caloml.quiet import import_tensorflow_quietly
from caloml.sim.particles import PDG_ID as _PDG_IDS  # PDG codes of caloml's particles

__all__ = [
    "GenerationRequest",
    "add_gan_parser",
    "condition_key",
    "generate_file",
    "generate_showers",
    "iter_batches_at_conditions",
    "iter_generated_batches",
    "run_gan",
]


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate; ranges left as None take the model's trained ranges.

    Attributes:
        n_events: number of showers.
        seed: seed of every random draw (energies, angles, noise).
        energy_range_gev: primary energy range (equal ends: a fixed energy), GeV; within the trained range.
        theta_range_rad: angle-condition range (equal ends: a fixed angle), radians; within the trained range. The
            angle is of the kind the model was trained with (``condition_angle``: true or measured angle).
        batch_size: showers generated (and held in memory) at once.
    """

    n_events: int
    seed: int = 1
    energy_range_gev: tuple[float, float] | None = None
    theta_range_rad: tuple[float, float] | None = None
    batch_size: int = 64

    def resolve(self, model: Any) -> GenerationRequest:
        """A copy with the model's ranges filled in and every value checked against the model (CalomlError)."""
        if self.n_events < 1:
            raise CalomlError(f"the number of showers must be positive, got {self.n_events}")
        if self.batch_size < 1:
            raise CalomlError(f"the batch size must be positive, got {self.batch_size}")
        energy = _checked_range("energy range", self.energy_range_gev or model.energy_range_gev, "GeV")
        theta = _checked_range("theta range", self.theta_range_rad or model.theta_range_rad, "rad")
        model.check_conditions(np.array(energy, np.float32), np.array(theta, np.float32))
        return GenerationRequest(self.n_events, int(self.seed), energy, theta, self.batch_size)

    def to_config(self, model: Any) -> dict[str, Any]:
        """The resolved request with the model's description, JSON-serializable (stored with the output)."""
        config: dict[str, Any] = asdict(self.resolve(model))
        config.update(
            generator="gan3d",
            particle=model.particle,
            condition_angle=getattr(model, "condition_angle", None),
            condition_key=condition_key(model),
            trained_energy_range_gev=list(model.energy_range_gev),
            trained_theta_range_rad=list(model.theta_range_rad),
            model_config=model.get_config(),
            caloml_version=caloml.__version__,
        )
        return config


def condition_key(model: Any) -> str:
    """The file key of the angle condition: ``theta`` (true-angle models) or ``mtheta_condition`` (measured)."""
    return "theta" if getattr(model, "condition_angle", "theta") == "theta" else "mtheta_condition"


def _checked_range(what: str, values: Any, unit: str) -> tuple[float, float]:
    low, high = (float(v) for v in values)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise CalomlError(f"{what} ({low}, {high}) {unit} is not finite")
    if high < low:
        raise CalomlError(f"{what} ({low}, {high}) {unit} is reversed: need low <= high")
    return low, high


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    low, high = bounds
    if low == high:
        return np.full(n, low, np.float32)
    # float32 rounding can step one ulp past a bound: GAN3D.check_conditions' tolerance (0.1% of the width) covers it
    return rng.uniform(low, high, n).astype(np.float32)


def _compiled_generate(model: Any) -> Any:
    """``model.generate(energy, theta, noise=noise)`` as one ``tf.function`` (traced once for every batch size)."""
    import tensorflow as tf  # lazy: python -m caloml.generate imports this module to parse its arguments

    noise_size = int(model.latent_size) - 2

    def generate(energy_gev: Any, theta_rad: Any, noise: Any) -> Any:
        return model.generate(energy_gev, theta_rad, noise=noise)

    signature = [
        tf.TensorSpec((None,), tf.float32),
        tf.TensorSpec((None,), tf.float32),
        tf.TensorSpec((None, noise_size), tf.float32),
    ]
    return tf.function(generate, input_signature=signature)


def iter_generated_batches(model: Any, request: GenerationRequest) -> Iterator[dict[str, np.ndarray]]:
    """Generate ``request`` batch by batch: dicts with the keys of the module docstring, energies in GeV.

    ``model`` is a :class:`caloml.models.gan3d.GAN3D`; ``request`` is resolved against it here.
    """
    request = request.resolve(model)
    generate = _compiled_generate(model)
    assert request.energy_range_gev is not None
    assert request.theta_range_rad is not None
    energy_rng, theta_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(request.seed).spawn(3))
    noise_size = int(model.latent_size) - 2
    for start in range(0, request.n_events, request.batch_size):
        n = min(request.batch_size, request.n_events - start)
        energy = _uniform(energy_rng, request.energy_range_gev, n)
        theta = _uniform(theta_rng, request.theta_range_rad, n)
        noise = noise_rng.standard_normal((n, noise_size), dtype=np.float32)
        yield _generated_batch(model, generate, energy, theta, noise, start)


def _generated_batch(
    model: Any, generate: Any, energy: np.ndarray, theta: np.ndarray, noise: np.ndarray, start: int
) -> dict[str, np.ndarray]:
    """One batch of showers for the given conditions and noise, as a dict with the keys of the module docstring."""
    n = len(energy)
    model.check_conditions(energy, theta)  # GAN3D.generate trusts its inputs
    showers = np.asarray(generate(energy, theta, noise), dtype=np.float32)
    if showers.shape != (n, 51, 51, 25) or not np.all(np.isfinite(showers)):
        raise CalomlError(
            f"the model produced {'invalid values' if showers.shape == (n, 51, 51, 25) else 'a wrong shape'}"
            f" for events {start}-{start + n - 1} (shape {showers.shape}); the checkpoint is broken"
        )
    batch = {"ECAL": showers, "energy": energy}
    if condition_key(model) == "theta":
        batch["theta"] = theta
        batch["eta"] = (-np.log(np.tan(theta.astype(np.float64) / 2.0))).astype(np.float32)
    else:
        batch["mtheta_condition"] = theta
    batch["mtheta"] = measured_angle(showers).astype(np.float32)
    batch["pdgID"] = np.full(n, _PDG_IDS.get(model.particle, 0), np.int32)
    batch["ECAL_E"] = showers.sum(axis=(1, 2, 3), dtype=np.float64).astype(np.float32)
    return batch


def iter_batches_at_conditions(
    model: Any, energy_gev: np.ndarray, theta_rad: np.ndarray, *, seed: int = 1, batch_size: int = 64
) -> Iterator[dict[str, np.ndarray]]:
    """Showers of ``model`` for given conditions, batch by batch (dicts with the keys of the module docstring).

    ``energy_gev`` and ``theta_rad`` are (N,) (GeV; radians, the model's kind of angle condition). The noise of
    shower ``i`` comes from its own stream, the ``i``-th child of ``numpy.random.SeedSequence(seed)``: a shower
    depends on the seed, its index and its conditions only (not on N or the batch size), so that two models given
    the same arguments see the same noise.
    """
    energy = np.asarray(energy_gev, np.float32).reshape(-1)
    theta = np.asarray(theta_rad, np.float32).reshape(-1)
    if energy.shape != theta.shape or energy.size == 0:
        raise CalomlError(f"need as many energies as angles, at least one: got {energy.size} and {theta.size}")
    if batch_size < 1:
        raise CalomlError(f"the batch size must be positive, got {batch_size}")
    generate = _compiled_generate(model)
    noise_size = int(model.latent_size) - 2
    streams = np.random.SeedSequence(int(seed)).spawn(energy.size)
    for start in range(0, energy.size, batch_size):
        stop = min(start + batch_size, energy.size)
        noise = np.stack(
            [np.random.default_rng(s).standard_normal(noise_size, dtype=np.float32) for s in streams[start:stop]]
        )
        yield _generated_batch(model, generate, energy[start:stop], theta[start:stop], noise, start)


def generate_showers(
    model: Any,
    n: int,
    *,
    energy_range_gev: tuple[float, float] | None = None,
    theta_range_rad: tuple[float, float] | None = None,
    seed: int = 1,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """``n`` showers of a trained :class:`~caloml.models.gan3d.GAN3D` in memory, for notebooks.

    Returns the keys of the module docstring (``ECAL`` (n, 51, 51, 25) in GeV, ``energy`` GeV, ``theta``,
    ``mtheta`` radians...). Ranges default to the model's trained ranges; energies and angles outside them, or not
    finite, raise :class:`~caloml.errors.CalomlError`. The same arguments give the same showers as
    ``python -m caloml.generate gan`` writes.
    """
    request = GenerationRequest(n, seed, energy_range_gev, theta_range_rad, batch_size)
    batches = list(iter_generated_batches(model, request))
    return {key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]}


def generate_file(
    model: Any,
    out: str | Path,
    request: GenerationRequest,
    *,
    overwrite: bool = False,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate ``request`` into the LCD file ``out``, atomically, one batch at a time.

    The resolved configuration (seed, ranges, the model's configuration and ``provenance``, for example the model
    path) is stored as the JSON root attribute ``caloml_config``. An existing ``out`` raises
    :class:`~caloml.errors.OutputExistsError` unless ``overwrite``. Returns the configuration with the output path.
    """
    out = Path(out)
    request = request.resolve(model)
    config = {**request.to_config(model), **(provenance or {})}
    bar = progress_bar(request.n_events, unit="shower", desc=f"generate {model.particle}", enabled=progress)
    with LCDWriter(out, overwrite=overwrite, attrs=provenance_attrs(config, caloml_generator="gan3d")) as writer, bar:
        for batch in iter_generated_batches(model, request):
            writer.append(batch)
            bar.update(len(batch["energy"]))
    return {**config, "out": str(out)}


# -- command line -------------------------------------------------------------------------------------------------
def add_gan_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``gan``: showers of a trained 3DGAN into an LCD file."""
    parser = subparsers.add_parser(
        "gan",
        help="generate showers with a trained 3DGAN into an LCD-layout HDF5 file",
        description=(
            "Generate showers with a trained 3DGAN (a run directory, a .keras file or an export) into an HDF5 file in"
            " the LCD generation layout (keys ECAL, energy, theta and eta - or mtheta_condition for a model "
            "conditioned on the measured angle -, mtheta measured on the showers, pdgID, ECAL_E; cells stored as 50 x"
            " GeV like the simulator's files). Energies and angles are drawn uniformly in the given ranges, which "
            "must lie within the model's trained ranges (the default). The file appears atomically."
        ),
    )
    parser.add_argument(
        "--model", required=True, metavar="PATH", help="run directory, .keras file or export of a GAN3D"
    )
    parser.add_argument("--particle", help="particle the model must be trained for (default: the model's)")
    parser.add_argument("-n", "--events", type=positive_int, required=True, help="number of showers")
    energy = parser.add_mutually_exclusive_group()
    energy.add_argument("--energy", type=float, metavar="GEV", help="fixed primary energy (GeV)")
    energy.add_argument("--energy-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="GeV")
    theta = parser.add_mutually_exclusive_group()
    theta.add_argument("--theta", type=parse_angle, metavar="ANGLE", help="fixed angle condition (rad or NNdeg)")
    theta.add_argument(
        "--theta-range",
        type=parse_angle,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="angle-condition range, rad or NNdeg (the kind of angle the model was trained on: true or measured)",
    )
    parser.add_argument("--seed", type=non_negative_seed, default=1, help="seed of every random draw (default 1)")
    parser.add_argument("--out", type=output_file, required=True, metavar="FILE.h5", help="output HDF5 file")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="showers per batch (default 64)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="arithmetic of the generator: bfloat16 = Keras mixed_bfloat16 (float32 on a machine without bfloat16"
        " units, with a note); the same noise gives the same showers to bfloat16 rounding (default float32)",
    )
    return parser


def run_gan(args: argparse.Namespace) -> int:
    """Load the model, check the request, generate into ``args.out`` and print one summary line."""
    energy = (args.energy, args.energy) if args.energy is not None else args.energy_range
    theta = (args.theta, args.theta) if args.theta is not None else args.theta_range
    for what, values, unit in (("energy", energy, "GeV"), ("theta", theta, "rad")):
        if values is not None:
            _checked_range(what, values, unit)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise OutputExistsError(f"{out}: output exists; pass --overwrite to replace it")
    shower_bytes = 51 * 51 * 25 * np.dtype(np.float32).itemsize  # the generator's output alone: a lower bound
    check_memory(args.batch_size * shower_bytes, f"--batch-size {args.batch_size} (showers of 51 x 51 x 25 cells)")

    if is_export(args.model) and args.precision != "float32":  # refused before the export is loaded
        raise CalomlError(
            f"{args.model}: --precision applies to a run directory or .keras file; an export computes in the"
            " precision it was exported with (python -m caloml.export gan --precision ...)"
        )
    resolve_model_file(args.model)  # a missing or wrong path fails before TensorFlow is loaded
    import_tensorflow_quietly()
    from caloml.models.gan3d import GAN3D  # imports TensorFlow: only after the argument checks above
    from caloml.models.precision import model_in_precision

    trained = load_trained_model(args.model, GAN3D, particle=args.particle, allow_export=True)
    if is_export(args.model):  # an export computes in the precision it was exported in (its export.json says which)
        model = trained.model
        precision = str(model.info.get("precision", "float32"))
    else:
        model = model_in_precision(trained.model, args.precision)
        precision = model.dtype_policy.name
    request = GenerationRequest(
        args.events,
        args.seed,
        tuple(energy) if energy is not None else None,
        tuple(theta) if theta is not None else None,
        args.batch_size,
    ).resolve(model)
    start = time.perf_counter()
    config = generate_file(
        model,
        out,
        request,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        provenance={**trained.provenance(), "precision": precision},
    )
    seconds = time.perf_counter() - start
    print(
        f"wrote {request.n_events} {config['particle']} showers (gan3d, seed {request.seed}) to {out} in"
        f" {seconds:.1f} s ({request.n_events / seconds:.1f} showers/s); configuration:"
        f" {json.dumps({k: config[k] for k in ('energy_range_gev', 'theta_range_rad')})}"
    )
    return 0
