"""The embedded default data of the training tasks: simulated once, cached as TFRecords under ``tf_records/``.

A cache directory is reused when its ``metadata.json`` records the same simulation request (geometry, particle,
sizes, ranges, seed); a directory of the same name with another request is refused rather than replaced. The
intermediate HDF5 file lives in a temporary directory and is removed after the conversion. See
``docs/reconstruction.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from caloml.data.tfrecord import convert_to_tfrecords, read_metadata
from caloml.errors import CalomlError, OutputExistsError
from caloml.sim.run import SimulationRequest, default_workers, simulate_file

#: Where cached default data sets go.
DEFAULT_RECORDS_ROOT = Path("tf_records")


def training_data_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration overrides of the training-data options of the 3DGAN and PointFlow tasks: ``--particle``,
    ``--energy-range`` (GeV) and ``--events`` of the default data, or ``--data`` and ``--validation-data``."""
    return {
        "data.particle": args.particle,
        "data.records": args.data,
        "data.validation_records": args.validation_data,
        "data.energy_range_gev": args.energy_range,
        "data.train_events": args.events,
    }


def cache_name(request: SimulationRequest, role: str) -> str:
    """``lcd-gen-electron-100-200GeV-2000ev-seed3-train``: the cache directory name of a request."""
    low, high = request.energy_range_gev or (0.0, 0.0)
    return f"{request.geometry}-{request.particle}-{low:g}-{high:g}GeV-{request.n_events}ev-seed{request.seed}-{role}"


def cached_simulation(
    request: SimulationRequest,
    role: str,
    *,
    root: Path = DEFAULT_RECORDS_ROOT,
    progress: bool = True,
    create: bool = True,
) -> Path:
    """The TFRecord directory holding ``request``'s showers, simulating and converting them if needed.

    ``create=False`` (a non-chief multi-worker task) raises instead of simulating, so that only one process
    writes the cache.
    """
    request = request.resolve()
    config = json.loads(json.dumps(request.to_config()))
    out = root / cache_name(request, role)
    if (out / "metadata.json").exists():
        if read_metadata(out).get("config") == config:
            print(f"reusing the cached {role} data in {out}")
            return out
        raise OutputExistsError(f"{out}: holds data of another simulation request; remove it or choose --data")
    if out.exists() and any(out.iterdir()):
        raise OutputExistsError(f"{out}: exists without metadata.json (an interrupted conversion?); remove it")
    if not create:
        raise CalomlError(
            f"{out}: the default data is not cached yet; run the same command once with one process "
            "(or pass --data) before starting the workers"
        )
    print(f"simulating {request.n_events} {request.particle} showers ({role}) into {out}")
    with tempfile.TemporaryDirectory(prefix="caloml-sim-") as tmp:
        h5_path = Path(tmp) / f"{out.name}.h5"
        simulate_file(request, h5_path, workers=default_workers(), progress=progress)
        convert_to_tfrecords([h5_path], out, overwrite=out.exists())
    return out
