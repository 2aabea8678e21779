"""Human-readable summaries of data files: :func:`inspect_path` for an HDF5 file or a TFRecord directory.

Neither summary imports TensorFlow: an HDF5 file is read with h5py (structure, validated scalars, attributes), a
TFRecord directory through its ``metadata.json`` plus a check that every listed shard exists. A problem (missing
file or key, wrong shape, NaN or negative energies, truncated file, missing shard) raises a one-line
:class:`caloml.errors.DataError`. See ``docs/data.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from caloml.data.calochallenge import CaloChallengeReader
from caloml.data.hdf5 import hdf5_errors, open_hdf5, open_reader
from caloml.data.lcd import LCDReader
from caloml.data.tfrecord import read_metadata, shard_paths
from caloml.errors import DataError
from caloml.units import LCD_STORED_PER_GEV, MEV_PER_GEV

__all__ = ["inspect_path"]


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError  # pragma: no cover


def _shape(shape: Any) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _short(value: Any, width: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def inspect_path(path: str | Path) -> str:
    """Multi-line summary of an HDF5 file (LCD or CaloChallenge) or of a TFRecord directory."""
    path = Path(path)
    if path.is_dir():
        return _inspect_records(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    return _inspect_hdf5(path)


def _inspect_hdf5(path: Path) -> str:
    with open_hdf5(path) as file, hdf5_errors(path, "read its structure"):
        datasets = []
        for name, obj in file.items():
            if hasattr(obj, "shape"):
                compression = f"{obj.compression} {obj.compression_opts}" if obj.compression else "uncompressed"
                chunks = f"chunks {_shape(obj.chunks)}" if obj.chunks else "contiguous"
                datasets.append((name, _shape(obj.shape), str(obj.dtype), f"{compression}, {chunks}"))
            else:
                datasets.append((name, "(group)", "", ""))
    reader = open_reader(path)  # validates the structure and the scalars
    with reader:
        lines = [f"file:      {path} ({_size(path.stat().st_size)})"]
        lines.append(f"layout:    {reader.layout} ({reader.geometry_name}), {reader.n_events} events")
        if isinstance(reader, LCDReader):
            lines.append(
                f"units:     cells ECAL/HCAL stored as {LCD_STORED_PER_GEV:g} x GeV (read as GeV), other energies"
                " GeV, angles rad"
            )
            energy_key = "energy"
            if reader.particle is not None:
                lines.append(f"particle:  {reader.particle} (pdgID {reader.pdg_id}, from the file name)")
        elif isinstance(reader, CaloChallengeReader):
            lines.append(f"units:     MeV in the file ({MEV_PER_GEV:g} MeV per GeV), read as GeV")
            lines.append(f"dataset:   CaloChallenge {reader.dataset.name}, showers per event {reader.dataset.shape}")
            energy_key = "incident_energies"
        else:  # pragma: no cover - open_reader returns one of the two
            energy_key = reader.required_keys[-1]
        if reader.n_events:
            energies = reader.read_key(energy_key)
            lines.append(f"energy:    {np.min(energies):.4g} .. {np.max(energies):.4g} GeV ({energy_key})")
        width = max(len(d[0]) for d in datasets)
        shape_width = max(len(d[1]) for d in datasets)
        lines.append("keys:")
        for name, shape, dtype, storage in datasets:
            lines.append(f"  {name:<{width}}  {shape:<{shape_width}}  {dtype:<8} {storage}".rstrip())
        if reader.attrs:
            lines.append("attributes:")
            for key, value in sorted(reader.attrs.items()):
                lines.append(f"  {key}: {_short(value)}")
    return "\n".join(lines)


def _inspect_records(path: Path) -> str:
    metadata = read_metadata(path)
    shards = shard_paths(path, metadata)  # raises if one is missing
    total = sum(p.stat().st_size for p in shards)
    n_events = int(metadata["n_events"])
    encoding = metadata["encoding"]
    lines = [
        f"records:   {path} ({len(shards)} shards, all present, {_size(total)},"
        f" {total / max(1, n_events):.0f} bytes per event)",
        f"layout:    {metadata.get('layout')} ({metadata.get('geometry')}), {n_events} events",
        f"encoding:  {encoding.get('name')} v{encoding.get('version')}, {encoding.get('compression')}",
        f"units:     {metadata.get('units')}, angles {metadata.get('angle_units')}",
        "arrays:",
    ]
    for key, info in metadata["arrays"].items():
        lines.append(f"  {key}  {_shape(info['shape'])}  {info['dtype']}  {info.get('geometry', '')}".rstrip())
    lines.append("scalars:   " + ", ".join(f"{k} {v['dtype']}" for k, v in metadata["scalars"].items()))
    lines.append("shards:    " + ", ".join(str(s["n_events"]) for s in metadata["shards"]) + " events")
    for source in metadata.get("sources", []):
        lines.append(
            f"source:    {source.get('path')} ({source.get('n_events')} events, sha256 {source.get('sha256')})"
        )
    if metadata.get("config") is not None:
        lines.append(f"config:    {_short(metadata['config'])}")
    if metadata.get("seed") is not None:
        lines.append(f"seed:      {metadata['seed']}")
    lines.append(f"created:   {metadata.get('created')} by caloml {metadata.get('caloml_version')}")
    return "\n".join(lines)
