"""Generating crystal-array showers with a trained ``wgan``, ``vae`` or ``vaewgan`` into the crystal layout.

``python -m caloml.generate {wgan,vae,vaewgan} --model RUN -n N --energy E --seed S --out FILE.h5`` writes
``showers`` (N, 5, 5) GeV, ``energy`` (N,) GeV and ``pdgID`` with :class:`caloml.data.crystal.CrystalWriter`, the
layout the simulator writes, so that ``python -m caloml.evaluate gen`` compares it with a simulated file directly.
The primary energies are one fixed value (``--energy``), a grid drawn uniformly (``--energies``), a uniform range
(``--energy-range``) or exactly those of another crystal file (``--like FILE.h5``: one shower per shower of that
file, in its order). Energies outside the model's trained range are a one-line error. The energies are drawn from
``seed``, the noise of batch k from ``(seed, k)``; the file appears atomically. See ``docs/vaewgan.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from caloml.cli_args import non_negative_seed, output_file, positive_int
from caloml.errors import CalomlError, OutputExistsError

__all__ = ["MODEL_CLASSES", "add_crystal_parser", "generate_crystal_file", "make_run", "request_energies"]

#: Command -> (module, class) of its model.
MODEL_CLASSES = {
    "wgan": ("caloml.models.crystal_wgan", "CrystalWGAN"),
    "vae": ("caloml.models.crystal_vae", "CrystalVAE"),
    "vaewgan": ("caloml.models.crystal_vaewgan", "CrystalVAEWGAN"),
}
_PDG_IDS = {"electron": 11, "photon": 22}


def model_class(kind: str) -> type:
    """The Keras class of the ``wgan``, ``vae`` or ``vaewgan`` model (imports TensorFlow)."""
    import importlib

    for module, _ in MODEL_CLASSES.values():  # all three registered: a model of another kind is named in the error
        importlib.import_module(module)
    module, name = MODEL_CLASSES[kind]
    return getattr(importlib.import_module(module), name)


def request_energies(args: argparse.Namespace) -> np.ndarray:
    """The primary energies (N,) GeV of a ``generate`` command (drawn from ``args.seed``); CalomlError on bad input."""
    if args.like is not None:
        from caloml.tasks.crystal.data import load_crystal_file

        return load_crystal_file(args.like)[1].astype(np.float64)
    if args.events is None:
        raise CalomlError("give the number of showers (-n) or --like FILE.h5")
    rng = np.random.default_rng(args.seed)
    if args.energies is not None:
        return rng.choice(np.asarray(args.energies, dtype=np.float64), args.events)
    if args.energy_range is not None:
        low, high = args.energy_range
        if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
            raise CalomlError(f"energy range {low:g} {high:g} GeV is invalid: need 0 < low <= high")
        return low + rng.random(args.events) * (high - low)
    if args.energy is None:
        raise CalomlError("give the primary energy: --energy, --energies, --energy-range or --like")
    return np.full(args.events, float(args.energy))


def generate_crystal_file(
    model: Any,
    energy_gev: np.ndarray,
    out: Path,
    *,
    seed: int,
    batch_size: int = 10000,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate one shower per energy (GeV) with ``model`` into the crystal file ``out``; returns its configuration."""
    from caloml.data.crystal import CrystalWriter
    from caloml.data.hdf5 import provenance_attrs

    energy = model.check_energies(energy_gev)
    config = {
        "geometry": model.geometry,
        "particle": model.particle,
        "generator": type(model).__name__,
        "n_events": int(energy.size),
        "seed": int(seed),
        "energy_range_gev": [float(energy.min()), float(energy.max())] if energy.size else None,
        **(provenance or {}),
    }
    with CrystalWriter(out, overwrite=overwrite, attrs=provenance_attrs(config)) as writer:
        for index, start in enumerate(range(0, energy.size, batch_size)):
            part = energy[start : start + batch_size]
            showers = model.generate(part, seed=_batch_seed(seed, index), batch_size=batch_size)
            writer.append(
                {"showers": showers, "energy": part, "pdgID": np.full(part.size, _PDG_IDS.get(model.particle, 0))}
            )
    return {**config, "out": str(out)}


def _batch_seed(seed: int, index: int) -> int:
    """The noise seed of batch ``index``: batch 0 uses ``seed`` itself (as ``model.generate`` and the export)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] >> 1) if index else int(seed)


def add_model_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str, description: str, models: str = ""
) -> argparse.ArgumentParser:
    """The sub-command ``name`` of a command on a trained crystal model: its one-line ``summary``, its
    ``description`` and the ``--model`` option (a run directory or a .keras file of ``models``, by default ``name``:
    ``wgan``, ``vae`` or ``vaewgan``)."""
    parser = subparsers.add_parser(name, help=summary, description=description)
    help_text = f"run directory or .keras file of a {models or name}"
    parser.add_argument("--model", required=True, metavar="PATH", help=help_text)
    return parser


def add_crystal_parser(kind: str) -> Any:
    """The add-parser function of the ``generate`` command ``kind`` (``wgan``, ``vae`` or ``vaewgan``)."""

    def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        parser = add_model_parser(
            subparsers,
            kind,
            f"generate crystal-5x5 showers with a trained {kind} into a crystal-layout HDF5 file",
            f"Generate showers with a trained {kind} (a run directory or a .keras file) into an HDF5 file in the"
            " crystal layout (showers (N, 5, 5) GeV, energy, pdgID). Energies must lie in the model's trained range.",
        )
        parser.add_argument("-n", "--events", type=positive_int, help="number of showers")
        energy = parser.add_mutually_exclusive_group()
        energy.add_argument("--energy", type=float, metavar="GEV", help="fixed primary energy (GeV)")
        energy.add_argument("--energies", type=float, nargs="+", metavar="GEV", help="a grid of energies (GeV)")
        energy.add_argument("--energy-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="GeV")
        energy.add_argument("--like", type=Path, metavar="FILE.h5", help="the energies of a crystal file's showers")
        parser.add_argument("--seed", type=non_negative_seed, default=1, help="seed of every random draw (default 1)")
        parser.add_argument("--out", type=output_file, required=True, metavar="FILE.h5", help="output HDF5 file")
        parser.add_argument("--batch-size", type=positive_int, default=10000, help="showers per batch")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
        return parser

    return add_parser


def make_run(kind: str) -> Any:
    """The run function of the ``generate`` command ``kind``."""

    def run(args: argparse.Namespace) -> int:
        out = Path(args.out)
        if out.exists() and not args.overwrite:
            raise OutputExistsError(f"{out}: output exists; pass --overwrite to replace it")
        from caloml.generate.trained_model import load_trained_model, resolve_model_file
        from caloml.quiet import import_tensorflow_quietly

        resolve_model_file(args.model)  # a missing or wrong path fails before TensorFlow is loaded
        energy = request_energies(args)
        import_tensorflow_quietly()
        trained = load_trained_model(args.model, model_class(kind), allow_export=True)
        exported_kind = getattr(trained.model, "kind", None)  # an export: the kind recorded in its export.json
        if exported_kind not in (None, kind):
            raise CalomlError(f"{args.model}: an export of a {exported_kind}, not a {kind}")
        if kind == "wgan" and exported_kind is None and type(trained.model).__name__ != "CrystalWGAN":
            raise CalomlError(f"{trained.model_file}: a {type(trained.model).__name__} model, expected a CrystalWGAN")
        start = time.perf_counter()
        generate_crystal_file(
            trained.model,
            energy,
            out,
            seed=args.seed,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            provenance=trained.provenance(),
        )
        seconds = time.perf_counter() - start
        print(f"wrote {energy.size} showers ({kind}, seed {args.seed}) to {out} in {seconds:.1f} s")
        return 0

    return run
