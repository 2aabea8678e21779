"""TensorFlow Serving's model directory layout: ``BASE/<model-name>/<version>/`` with integer versions.

TF Serving watches ``BASE/<model-name>/`` and serves the highest integer version directory; other names (such as
the hidden temporary directories below) are ignored. A version is written into a temporary directory beside its
final place and renamed when complete, so that a server never sees half a model, and an existing version is never
replaced (:class:`~caloml.errors.OutputExistsError`): a new model gets a new version.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from caloml.errors import CalomlError, OutputExistsError

__all__ = ["EXPORT_INFO_FILE", "existing_versions", "next_version", "staged_version", "write_export_info"]

#: The description written into every exported version directory (JSON).
EXPORT_INFO_FILE = "export.json"


def existing_versions(model_dir: str | Path) -> list[int]:
    """The integer version directories of ``model_dir``, sorted (empty when it does not exist)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: str | Path) -> int:
    """One more than the highest existing version of ``model_dir`` (1 for a new model)."""
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


@contextmanager
def staged_version(model_dir: str | Path, version: int | None = None) -> Iterator[tuple[Path, int]]:
    """Yield ``(temporary directory, version)``; the directory becomes ``model_dir/<version>`` when the block ends.

    ``version`` None takes :func:`next_version`. An existing version raises :class:`OutputExistsError` (before any
    work and again at the rename); an exception in the block removes the temporary directory.
    """
    model_dir = Path(model_dir)
    if version is None:
        version = next_version(model_dir)
    if int(version) < 1:
        raise CalomlError(f"{model_dir}: version must be a positive integer, got {version}")
    version = int(version)
    final = model_dir / str(version)
    if final.exists():
        raise OutputExistsError(f"{final}: version {version} exists; exported versions are never replaced")
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".tmp-{version}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp, version
        if final.exists():
            raise OutputExistsError(f"{final}: version {version} appeared while exporting; not replaced")
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_export_info(directory: str | Path, info: dict[str, Any]) -> Path:
    """Write ``info`` as ``directory/export.json`` (sorted keys, indented) and return its path."""
    path = Path(directory) / EXPORT_INFO_FILE
    path.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return path
