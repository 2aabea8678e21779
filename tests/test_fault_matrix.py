"""The fault-injection matrix: bad inputs and faults against every command line, as a user meets them.

Every row runs one command line in-process (its ``main`` under :func:`caloml.errors.run_cli`) in a directory that
holds a pre-existing output file (``existing.h5``), a pre-existing output directory (``existing_dir``), a regular
file to put outputs under (``blocker``) and damaged inputs, and asserts what the command lines promise: exit status
2, exactly one line on stderr starting ``caloml: error:``, no traceback, the expected fragment in that line, and the
directory left exactly as it was (every file compared by SHA-256: nothing half-written, nothing replaced).

A row is one :class:`Case` in :data:`CASES`: a readable id, the command line's module, its arguments (``{name}``
placeholders are the paths of :func:`workspace`), the fragment of the message, and optionally a fault injected
into the write layer (a full disk, the file-size limit) or an environment variable. Adding a command is adding
rows. The subprocess cases that need a real process (a real full file system, a kill) are in
``tests/test_kill_resume.py``.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_lcd_events

import caloml.atomic_files
import caloml.data.hdf5
from caloml.data.lcd import LCDWriter
from caloml.errors import run_cli

#: Command line -> module holding its ``main``.
MAINS = {
    "data": "caloml.data.__main__",
    "generate": "caloml.generate.__main__",
    "export": "caloml.export.__main__",
    "evaluate": "caloml.evaluate.__main__",
    "train": "caloml.train",
    "scan": "caloml.scan",
    "bench": "caloml.bench.__main__",
    "caloml": "caloml.__main__",
}


def _os_error(number: int) -> OSError:
    return OSError(number, os.strerror(number))


def _full_hdf5(number: int) -> Callable[[pytest.MonkeyPatch], None]:
    """Every HDF5 dataset write fails with ``number`` (ENOSPC: a full disk), as h5py reports it."""

    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        def fail(*args: object, **kwargs: object) -> None:
            raise _os_error(number)

        monkeypatch.setattr(caloml.data.hdf5, "_write_deflated_events", fail)
        monkeypatch.setattr(h5py.Dataset, "__setitem__", fail)

    return inject


class _FullFile:
    """A file whose writes fail with an OSError (a full disk, the file-size limit) after ``limit`` bytes."""

    def __init__(self, handle: object, number: int, limit: int) -> None:
        self._handle, self._number, self._left = handle, number, limit

    def write(self, data: bytes | str) -> int:
        self._left -= len(data)
        if self._left < 0:
            raise _os_error(self._number)
        return self._handle.write(data)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._handle, name)

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()  # type: ignore[attr-defined]


def _full_atomic_files(number: int, limit: int = 0) -> Callable[[pytest.MonkeyPatch], None]:
    """The files of :mod:`caloml.atomic_files` fail to write after ``limit`` bytes."""

    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        def full_open(path: object, mode: str = "r", *args: object, **kwargs: object) -> _FullFile:
            return _FullFile(open(path, mode, *args, **kwargs), number, limit)  # type: ignore[call-overload]

        monkeypatch.setattr(caloml.atomic_files, "open", full_open, raising=False)

    return inject


def _full_tfrecords(monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorFlow's TFRecord writer fails as it does on a full disk (ResourceExhaustedError)."""
    import tensorflow as tf

    class FullWriter:
        def __init__(self, path: str, options: object = None) -> None:
            self.path = path

        def write(self, record: bytes) -> None:
            raise tf.errors.ResourceExhaustedError(None, None, f"{self.path}; No space left on device")

        def close(self) -> None:
            pass

        def __enter__(self) -> FullWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(tf.io, "TFRecordWriter", FullWriter)


def _full_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Saving a figure fails with ENOSPC (the plots of the validation and evaluation reports)."""
    import matplotlib.figure

    def fail(*args: object, **kwargs: object) -> None:
        raise _os_error(errno.ENOSPC)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", fail)


@dataclass(frozen=True)
class Case:
    """One row: ``command`` (a key of :data:`MAINS`) run with ``args`` must fail with ``message`` in one line."""

    id: str
    command: str
    args: tuple[str, ...]
    message: str
    fault: Callable[[pytest.MonkeyPatch], None] | None = None
    env: dict[str, str] = field(default_factory=dict)


def case(
    id: str,
    command: str,
    args: str,
    message: str,
    fault: Callable[[pytest.MonkeyPatch], None] | None = None,
    **env: str,
) -> Case:
    """A row; ``args`` is split on whitespace (paths come from placeholders, which hold no spaces)."""
    return Case(id, command, tuple(args.split()), message, fault, dict(env))


SIM = "simulate -n 8 --no-progress --workers 1"
TINY_GAN = "gan --events 24 --batch-size 4 --steps-per-epoch 2 --epochs 1 --no-progress"
#: A valid ``evaluate curve`` command line up to the reference checks (the rows change one argument or add one).
CURVE = "curve --run {curve_run} --reference {lcd} --out {new_dir} --no-classifier --no-progress"
WORKERS = '{"cluster": {"worker": ["localhost:2222", "localhost:2223"]}, "task": {"type": "worker", "index": %s}}'
TWO_CHIEFS = '{"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief", "index": 0}}'
SAME_ADDRESS = '{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}'
NO_PORT = '{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}'
BAD_ROLE = '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}'

CASES = [
    # -- caloml.data simulate: arguments at the edge, output paths before any work, a full disk ---------------------
    case("simulate-seed-negative", "data", f"{SIM} --seed -1 --out {{existing}} --overwrite", "seed must be"),
    case("simulate-seed-fraction", "data", f"{SIM} --seed 1.5 --out {{existing}} --overwrite", "seed must be"),
    case("simulate-seed-too-large", "data", f"{SIM} --seed 4294967296 --out {{existing}} --overwrite", "seed must"),
    case("simulate-energy-1e9", "data", f"{SIM} --energy 1e9 --out {{existing}} --overwrite", "TiB of memory"),
    case("simulate-energy-above-range", "data", f"{SIM} --energy 2e4 --out {{existing}} --overwrite", "above the"),
    case("simulate-energy-below-range", "data", f"{SIM} --energy 0.1 --out {{existing}} --overwrite", "is invalid"),
    case("simulate-energy-nan", "data", f"{SIM} --energy nan --out {{existing}} --overwrite", "is invalid"),
    case("simulate-energy-inf", "data", f"{SIM} --energy inf --out {{existing}} --overwrite", "is invalid"),
    case("simulate-energy-range-reversed", "data", f"{SIM} --energy-range 100 10 --out {{existing}}", "is invalid"),
    case("simulate-energies-negative", "data", f"{SIM} --energies -5 10 --out {{existing}} --overwrite", "invalid"),
    case("simulate-theta-outside-window", "data", f"{SIM} --theta 10deg --out {{existing}} --overwrite", "window"),
    case("simulate-events-zero", "data", "simulate -n 0 --out {existing} --overwrite", "must be positive"),
    case(
        "simulate-events-beyond-memory", "data", "simulate -n 100000000000000 --energy 10 --out {new}", "PiB of memory"
    ),
    case("simulate-crystal-pion", "data", f"{SIM} --geometry crystal-5x5 --particle chpi --out {{new}}", "crystal"),
    case("simulate-calochallenge-angle", "data", f"{SIM} --geometry calochallenge-2 --theta 1 --out {{new}}", "pi/2"),
    case("simulate-out-under-file", "data", f"{SIM} --out {{blocker}}/sub/x.h5", "is a file, not a directory"),
    case("simulate-out-is-directory", "data", f"{SIM} --out {{existing_dir}} --overwrite", "is a directory"),
    case("simulate-out-exists", "data", f"{SIM} --out {{existing}}", "--overwrite"),
    case("simulate-disk-full", "data", f"{SIM} --out {{existing}} --overwrite", "no space left", _full_hdf5(28)),
    case("simulate-file-size-limit", "data", f"{SIM} --out {{new}}", "file too large", _full_hdf5(errno.EFBIG)),
    case("simulate-disk-quota", "data", f"{SIM} --out {{new}}", "quota", _full_hdf5(errno.EDQUOT)),
    # -- validate, prepare ---------------------------------------------------------------------------------------------
    case("validate-seed-negative", "data", "validate --quick --seed -3 --out {existing_dir} --overwrite", "seed"),
    case("validate-out-under-file", "data", "validate --quick --out {blocker}/validation", "is a file"),
    case("validate-out-is-file", "data", "validate --quick --out {existing} --overwrite", "not a directory"),
    case("validate-out-exists", "data", "validate --quick --out {existing_dir} --no-progress", "--overwrite"),
    case("prepare-run-dir-under-file", "data", "prepare -n 8 --run-dir {blocker}/run", "is a file"),
    case("prepare-records-under-file", "data", "prepare -n 8 --run-dir {new_dir} --records {blocker}/r", "is a file"),
    case("prepare-seed-negative", "data", "prepare -n 8 --seed -2 --run-dir {new_dir}", "seed must be"),
    # -- convert, inspect, verify, resample ---------------------------------------------------------------------------
    case("convert-missing-input", "data", "convert {missing} --out {existing_dir} --overwrite", "no such file"),
    case("convert-corrupt-input", "data", "convert {corrupt} --out {existing_dir} --overwrite", "corrupt.h5"),
    case("convert-truncated-input", "data", "convert {truncated} --out {existing_dir} --overwrite", "truncated"),
    case("convert-nan-energy", "data", "convert {nan} --out {existing_dir} --overwrite", "NaN"),
    case("convert-out-under-file", "data", "convert {lcd} --out {blocker}/records", "is a file"),
    case("convert-out-is-file", "data", "convert {lcd} --out {existing} --overwrite", "not a directory"),
    case("convert-out-exists", "data", "convert {lcd} --out {existing_dir}", "--overwrite"),
    case("convert-disk-full", "data", "convert {lcd} --out {existing_dir} --overwrite", "no space", _full_tfrecords),
    case("inspect-missing", "data", "inspect {missing}", "missing.h5"),
    case("inspect-corrupt", "data", "inspect {corrupt}", "corrupt.h5"),
    case("verify-missing", "data", "verify {missing}", "missing.h5"),
    case("verify-corrupt-shard", "data", "verify {corrupt_records}", "corrupt"),
    case("resample-missing-input", "data", "resample {missing} {existing} --detector atlas --overwrite", "missing"),
    case("resample-corrupt-input", "data", "resample {corrupt} {existing} --detector atlas --overwrite", "corrupt"),
    case("resample-out-under-file", "data", "resample {lcd} {blocker}/x.h5 --detector atlas", "is a file"),
    case("resample-out-exists", "data", "resample {lcd} {existing} --detector atlas", "--overwrite"),
    case(
        "resample-disk-full", "data", "resample {lcd} {existing} --detector cms --overwrite", "no space", _full_hdf5(28)
    ),
    # -- caloml.generate ----------------------------------------------------------------------------------------------
    case("generate-gan-seed-negative", "generate", "gan --model {missing} -n 4 --seed -1 --out {new}", "seed must"),
    case("generate-gan-out-under-file", "generate", "gan --model {missing} -n 4 --out {blocker}/g.h5", "is a file"),
    case("generate-gan-out-is-directory", "generate", "gan --model {missing} -n 4 --out {existing_dir}", "directory"),
    case("generate-gan-out-exists", "generate", "gan --model {missing} -n 4 --out {existing}", "--overwrite"),
    case(
        "generate-gan-missing-model", "generate", "gan --model {missing} -n 4 --out {existing} --overwrite", "missing"
    ),
    case("generate-gan-energy-nan", "generate", "gan --model {missing} -n 4 --energy nan --out {new}", "energy"),
    case(
        "generate-gan-batch-beyond-memory",
        "generate",
        "gan --model {missing} -n 4 --batch-size 10000000 --out {new}",
        "TiB of memory",
    ),
    case(
        "generate-pointflow-seed-negative", "generate", "pointflow --model {missing} -n 4 --seed -5 --out {new}", "seed"
    ),
    case(
        "generate-pointflow-out-under-file",
        "generate",
        "pointflow --model {missing} -n 4 --out {blocker}/p.h5",
        "a file",
    ),
    case("generate-pointflow-missing-model", "generate", "pointflow --model {missing} -n 4 --out {new}", "missing"),
    case(
        "generate-pointflow-batch-beyond-memory",
        "generate",
        "pointflow --model {missing} -n 4 --batch-size 1000000000 --out {new}",
        "of memory",
    ),
    case("generate-wgan-seed-negative", "generate", "wgan --model {missing} -n 4 --seed -1 --out {new}", "seed must"),
    case("generate-vae-out-under-file", "generate", "vae --model {missing} -n 4 --out {blocker}/c.h5", "is a file"),
    case(
        "generate-pyramid-out-under-file", "generate", "pyramid --model {missing} -n 4 --out {blocker}/p.h5", "a file"
    ),
    # generating from a damaged or incomplete export directory
    case(
        "generate-gan-export-without-saved-model",
        "generate",
        "gan --model {export_no_pb} -n 4 --out {new}",
        "an incomplete export (no saved_model.pb",
    ),
    case(
        "generate-gan-export-info-corrupt",
        "generate",
        "gan --model {export_corrupt_info} -n 4 --out {existing} --overwrite",
        "without a readable export.json",
    ),
    case(
        "generate-gan-export-info-missing",
        "generate",
        "gan --model {export_no_info} -n 4 --out {new}",
        "without a readable export.json",
    ),
    case(
        "generate-gan-export-saved-model-corrupt",
        "generate",
        "gan --model {export_corrupt_pb} -n 4 --out {existing} --overwrite",
        "not a readable SavedModel",
    ),
    case(
        "generate-gan-export-of-another-model",
        "generate",
        "gan --model {export_pyramid} -n 4 --out {new}",
        "an export of a CalorimeterPyramid model, expected a GAN3D",
    ),
    case(
        "generate-gan-export-precision-bfloat16",
        "generate",
        "gan --model {export_corrupt_pb} -n 4 --precision bfloat16 --out {new}",
        "--precision applies to a run directory or .keras file",
    ),
    case("generate-gan-precision-unknown", "generate", "gan --model {missing} -n 4 --precision fp8 --out {new}", "fp8"),
    case(
        "generate-pyramid-export-info-corrupt",
        "generate",
        "pyramid --model {export_corrupt_info} -n 4 --out {new}",
        "without a readable export.json",
    ),
    # -- caloml.export ------------------------------------------------------------------------------------------------
    case("export-gan-saved-models-under-file", "export", "gan --model {missing} --saved-models {blocker}/sm", "a file"),
    case("export-gan-saved-models-is-file", "export", "gan --model {missing} --saved-models {existing}", "directory"),
    case("export-gan-missing-model", "export", "gan --model {missing} --saved-models {existing_dir}", "missing"),
    case("export-triforce-under-file", "export", "triforce --model {missing} --saved-models {blocker}/sm", "a file"),
    case("export-pointflow-under-file", "export", "pointflow --model {missing} --saved-models {blocker}/sm", "a file"),
    case("export-vaewgan-under-file", "export", "vaewgan --model {missing} --saved-models {blocker}/sm", "a file"),
    case("export-pyramid-under-file", "export", "pyramid --model {missing} --saved-models {blocker}/sm", "a file"),
    case("export-pointflow-onnx", "export", "pointflow --model {missing} --format onnx", "has no ONNX form"),
    case("export-pyramid-onnx", "export", "pyramid --model {missing} --format saved_model,onnx", "has no ONNX form"),
    case("export-gan-precision-unknown", "export", "gan --model {missing} --precision float16", "choice: 'float16'"),
    case("export-gan-format-empty", "export", "gan --model {missing} --format ,", "formats are comma-separated"),
    case(
        "export-gan-onnx-from-incomplete-export",
        "export",
        "gan --model {export_no_pb} --format onnx --saved-models {existing_dir}",
        "an incomplete export (no saved_model.pb",
    ),
    case(
        "export-gan-onnx-from-an-export",
        "export",
        "gan --model {export_corrupt_pb} --format onnx --saved-models {existing_dir}",
        "an exported SavedModel; this command needs the run directory",
    ),
    case("export-triforce-onnx-missing-model", "export", "triforce --model {missing} --format onnx", "missing"),
    # -- caloml.evaluate ----------------------------------------------------------------------------------------------
    case(
        "evaluate-gen-out-under-file", "evaluate", "gen --generated {lcd} --reference {lcd} --out {blocker}/r", "a file"
    ),
    case(
        "evaluate-gen-out-is-file", "evaluate", "gen --generated {lcd} --reference {lcd} --out {existing}", "not a dir"
    ),
    case(
        "evaluate-gen-seed-negative",
        "evaluate",
        "gen --generated {lcd} --reference {lcd} --out {new_dir} --seed -1",
        "seed must",
    ),
    case(
        "evaluate-gen-missing-input",
        "evaluate",
        "gen --generated {missing} --reference {lcd} --out {new_dir}",
        "missing",
    ),
    case(
        "evaluate-gen-corrupt-reference",
        "evaluate",
        "gen --generated {lcd} --reference {corrupt} --out {new_dir}",
        "corrupt.h5",
    ),
    case("evaluate-gen-nan-input", "evaluate", "gen --generated {nan} --reference {lcd} --out {new_dir}", "NaN"),
    case(
        "evaluate-gen-out-exists",
        "evaluate",
        "gen --generated {lcd} --reference {lcd} --out {existing_dir}",
        "overwrite",
    ),
    case(
        "evaluate-gen-disk-full",
        "evaluate",
        "gen --generated {lcd2} --reference {lcd} --out {existing_dir} --overwrite --no-classifier --no-progress",
        "no space left",
        _full_plots,
    ),
    case("evaluate-reco-out-under-file", "evaluate", "reco --test {lcd} --model {missing} --out {blocker}/r", "a file"),
    case(
        "evaluate-reco-seed-negative",
        "evaluate",
        "reco --test {lcd} --model {missing} --out {new_dir} --seed -1",
        "seed",
    ),
    case("evaluate-curve-no-checkpoints", "evaluate", f"{CURVE} --run {{curve_no_checkpoints}}", "no checkpoints"),
    case(
        "evaluate-curve-epoch-not-kept", "evaluate", f"{CURVE} --epochs 1,3", "epoch 3 is kept in no run; kept epochs:"
    ),
    case(
        "evaluate-curve-no-epoch-kept",
        "evaluate",
        f"{CURVE} --epochs 3,4",
        "none of the epochs 3, 4 is kept; kept epochs: 1, 2",
    ),
    case("evaluate-curve-bad-epochs", "evaluate", f"{CURVE} --epochs 0", "--epochs must be"),
    case("evaluate-curve-not-3dgan", "evaluate", f"{CURVE} --run {{curve_run}} {{curve_other}}", "not a 3DGAN run"),
    case("evaluate-curve-missing-run", "evaluate", f"{CURVE} --run {{missing}}", "no such run directory"),
    case("evaluate-curve-bad-timing", "evaluate", f"{CURVE} --run {{curve_bad_timing}}", "unreadable timing"),
    case(
        "evaluate-curve-missing-reference",
        "evaluate",
        "curve --run {curve_run} --reference {missing} --out {new_dir}",
        "missing",
    ),
    case(
        "evaluate-curve-corrupt-reference",
        "evaluate",
        "curve --run {curve_run} --reference {corrupt} --out {new_dir}",
        "corrupt.h5",
    ),
    case("evaluate-curve-too-many-showers", "evaluate", f"{CURVE} -n 41", "more than the reference's 40 showers"),
    case("evaluate-curve-out-exists", "evaluate", f"{CURVE} --out {{existing_dir}}", "overwrite"),
    case(
        "evaluate-curve-reference-lacks-mtheta", "evaluate", f"{CURVE} -n 8 --run {{curve_mtheta}}", "no 'mtheta' key"
    ),
    case(
        "evaluate-curve-no-training-data",
        "evaluate",
        f"{CURVE} -n 8",
        "rebuilding its model needs the run's training data",
    ),
    case(
        "evaluate-precision-missing-model",
        "evaluate",
        "precision --model {missing} --out {new_dir}",
        "no such model file or run directory",
    ),
    case("evaluate-precision-corrupt-model", "evaluate", "precision --model {corrupt} --out {new_dir}", "Keras model"),
    case(
        "evaluate-precision-negative-draws",
        "evaluate",
        "precision --model {missing} --out {new_dir} --draws -1",
        "--draws must be 0 or more",
    ),
    case("evaluate-precision-out-exists", "evaluate", "precision --model {missing} --out {existing_dir}", "overwrite"),
    case(
        "evaluate-reco-precision-unknown",
        "evaluate",
        "reco --test {lcd} --model {missing} --out {new_dir} --precision float16",
        "choice: 'float16'",
    ),
    case(
        "evaluate-latent-out-under-file",
        "evaluate",
        "latent --model {missing} --reference {lcd} --out {blocker}/r",
        "a file",
    ),
    # -- caloml.train, caloml.scan, caloml.bench ----------------------------------------------------------------------
    case("train-seed-negative", "train", f"{TINY_GAN} --seed -1 --run-dir {{new_dir}}", "seed must be"),
    case("train-run-dir-under-file", "train", f"{TINY_GAN} --run-dir {{blocker}}/run", "is a file"),
    case("train-run-dir-is-file", "train", f"{TINY_GAN} --run-dir {{existing}}", "not a directory"),
    case("train-unknown-model", "train", "gann --epochs 1", "unknown model 'gann'"),
    case(
        "train-tf-config-index-too-large",
        "train",
        f"{TINY_GAN} --strategy multi_worker --run-dir {{new_dir}}",
        "task.index 5 does not name a worker",
        TF_CONFIG=WORKERS % 5,
    ),
    case(
        "train-tf-config-index-negative",
        "train",
        f"{TINY_GAN} --strategy multi_worker --run-dir {{new_dir}}",
        "task.index -1",
        TF_CONFIG=WORKERS % -1,
    ),
    case(
        "train-tf-config-not-json",
        "train",
        f"{TINY_GAN} --strategy multi_worker --run-dir {{new_dir}}",
        "not valid JSON",
        TF_CONFIG="{cluster",
    ),
    case(
        "train-tf-config-two-chiefs",
        "train",
        f"{TINY_GAN} --strategy multi_worker --run-dir {{new_dir}}",
        "2 chiefs",
        TF_CONFIG=TWO_CHIEFS,
    ),
    case(
        "train-tf-config-same-address",
        "train",
        f"{TINY_GAN} --strategy multi_worker --run-dir {{new_dir}}",
        "more than once",
        TF_CONFIG=SAME_ADDRESS,
    ),
    case(
        "train-tf-config-no-port",
        "train",
        f"{TINY_GAN} --strategy multi_worker --run-dir {{new_dir}}",
        "HOST:PORT",
        TF_CONFIG=NO_PORT,
    ),
    case(
        "train-tf-config-task-role-absent",
        "train",
        f"{TINY_GAN} --strategy multi_worker --run-dir {{new_dir}}",
        "not a role of the cluster",
        TF_CONFIG=BAD_ROLE,
    ),
    case("train-on-nonfinite-unknown", "train", f"{TINY_GAN} --on-nonfinite bogus", "invalid choice: 'bogus'"),
    case(
        "train-deterministic-linreg",
        "train",
        "linreg --particle pi0 --deterministic --run-dir {new_dir}",
        "--deterministic does not apply to linreg",
    ),
    case(
        "train-deterministic-bdt",
        "train",
        "bdt --task gamma-vs-pi0 --deterministic --run-dir {existing_dir}",
        "--deterministic does not apply to bdt",
    ),
    case(
        "train-on-nonfinite-xgb",
        "train",
        "xgb --particle pi0 --on-nonfinite skip-batch --run-dir {new_dir}",
        "--on-nonfinite does not apply to xgb",
    ),
    case(
        "scan-run-root-under-file", "scan", "gan --grid model.latent_size=8,16 --run-root {blocker}/scan", "is a file"
    ),
    case(
        "scan-sample-seed-negative",
        "scan",
        "gan --grid model.latent_size=8,16 --run-root {new_dir} --sample-seed -4",
        "seed must",
    ),
    case("bench-seed-negative", "bench", "sim --seed -1", "seed must be"),
    case("bench-unknown-benchmark", "bench", "simm", "unknown benchmark 'simm'"),
    case("bench-events-zero", "bench", "sim -n 0", "must be positive, got 0"),
    case("bench-batches-zero", "bench", "gan --batches 0", "need positive integers, got '0'"),
    case("bench-batches-not-integers", "bench", "gan --batches 1,x", "not a comma-separated list of integers"),
    case("bench-modes-unknown", "bench", "gan --modes fp8", "got 'fp8'"),
    case("bench-networks-unknown", "bench", "reco --networks rnn", "got 'rnn'"),
    case("bench-repeats-zero", "bench", "gan --repeats 0", "must be positive, got 0"),
    case("bench-max-call-seconds-negative", "bench", "gan --max-call-seconds -1", "must be positive, got -1"),
    case("bench-max-call-seconds-nan", "bench", "gan --max-call-seconds nan", "must be positive, got nan"),
    case("bench-gan-missing-model", "bench", "gan --model {missing} --batches 1", "no such model file"),
    # -- argparse's own usage errors are one line too (caloml.cli_args.CommandLineParser) ----------------------------
    case("usage-simulate-unknown-flag", "data", f"{SIM} --out {{new}} --bogus", "unrecognized arguments: --bogus"),
    case("usage-simulate-bad-int", "data", "simulate -n many --out {new}", "invalid int value: 'many'"),
    case("usage-train-unknown-flag", "train", f"{TINY_GAN} --bogus", "unrecognized arguments: --bogus"),
    case("usage-generate-missing-arguments", "generate", "gan", "the following arguments are required"),
    case("usage-export-unknown-format", "export", "gan --model {missing} --format pdf", "got 'pdf'"),
    case("usage-evaluate-unknown-command", "evaluate", "generated", "invalid choice: 'generated'"),
    case("usage-scan-unknown-flag", "scan", "gan --run-root {new_dir} --bogus", "unrecognized arguments"),
    # -- the caloml console script: its own dispatch and the sub-commands' errors ------------------------------------
    case("caloml-unknown-command", "caloml", "simulate -n 4", "unknown command 'simulate'"),
    case("caloml-data-seed-negative", "caloml", f"data {SIM} --seed -1 --out {{new}}", "seed must be"),
    case("caloml-train-unknown-flag", "caloml", f"train {TINY_GAN} --bogus", "unrecognized arguments: --bogus"),
]


def _tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root`` (directories as ``dir``)."""
    digest = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if "__pycache__" in relative:
            continue
        digest[relative] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def _export_version(
    model_dir: Path,
    *,
    saved_model: bool = True,
    info: str | None = "",
    model: str = "gan3d",
    cls: str = "caloml.models.gan3d.GAN3D",
) -> Path:
    """A damaged export version directory ``model_dir/1``: ``saved_model.pb`` random bytes (or absent), and
    ``assets.extra/export.json`` naming ``model`` and ``cls`` (``info`` "": a valid one; other text: that text;
    None: absent)."""
    version = model_dir / "1"
    (version / "assets.extra").mkdir(parents=True)
    (version / "variables").mkdir()
    if saved_model:
        (version / "saved_model.pb").write_bytes(np.random.default_rng(11).bytes(512))
    if info is not None:
        text = info or json.dumps({"model": model, "model_class": cls, "precision": "float32", "seed": 1})
        (version / "assets.extra" / "export.json").write_text(text)
    return version


@pytest.fixture(scope="module")
def damaged_inputs(tmp_path_factory: pytest.TempPathFactory, lcd_file: Path, records_dir: Path) -> dict[str, Path]:
    """Inputs shared by the rows (never written by them): a good LCD file and damaged ones."""
    root = tmp_path_factory.mktemp("fault-inputs")
    rng = np.random.default_rng(17)
    (root / "corrupt.h5").write_bytes(rng.bytes(4096))
    data = lcd_file.read_bytes()
    (root / "truncated.h5").write_bytes(data[: len(data) // 2])
    with h5py.File(lcd_file) as source, h5py.File(root / "nan.h5", "w") as target:
        for key in source:
            target[key] = source[key][()]
        energy = np.array(source["energy"][()], dtype=np.float64)
        energy[3] = np.nan
        del target["energy"]
        target["energy"] = energy
    records = root / "corrupt_records"
    records.mkdir()
    for path in records_dir.iterdir():
        (records / path.name).write_bytes(path.read_bytes())
    shard = sorted(records.glob("shard-*"))[1]
    damaged = bytearray(shard.read_bytes())
    damaged[len(damaged) // 2 : len(damaged) // 2 + 100] = b"\xff" * 100
    shard.write_bytes(bytes(damaged))
    with LCDWriter(root / "generated.h5") as writer:
        writer.append(make_lcd_events(seed=5))
    exports = {
        "export_no_pb": _export_version(root / "no_pb", saved_model=False),
        "export_corrupt_pb": _export_version(root / "corrupt_pb"),
        "export_corrupt_info": _export_version(root / "corrupt_info", info='{"model": "gan3d", '),
        "export_no_info": _export_version(root / "no_info", info=None),
        "export_pyramid": _export_version(
            root / "pyramid", model="pyramid", cls="caloml.models.pyramid.CalorimeterPyramid"
        ),
    }
    return {
        **exports,
        **_curve_runs(root),
        "lcd": lcd_file,
        "lcd2": root / "generated.h5",
        "corrupt": root / "corrupt.h5",
        "truncated": root / "truncated.h5",
        "nan": root / "nan.h5",
        "corrupt_records": records,
    }


def _curve_runs(root: Path) -> dict[str, Path]:
    """Run directories for ``evaluate curve``: a 3DGAN run with (empty) checkpoints of epochs 1 and 2 and no training
    data, one without checkpoints, one with a damaged timing.json, one conditioned on the measured angle (which the
    test LCD file lacks) and a run of another model."""
    names = ("curve_run", "curve_no_checkpoints", "curve_bad_timing", "curve_other", "curve_mtheta")
    runs = {name: root / name for name in names}
    models = {"curve_other": "{hidden_units: 8}", "curve_mtheta": "{condition_angle: mtheta}"}
    for name, run in runs.items():
        (run / "checkpoints").mkdir(parents=True)
        model = f"model: {models.get(name, '{condition_angle: theta}')}\n"
        (run / "config.yaml").write_text(model)
        for epoch in (1, 2) if name != "curve_no_checkpoints" else ():
            (run / "checkpoints" / f"ckpt-{epoch}.index").write_bytes(b"")
    (runs["curve_bad_timing"] / "timing.json").write_text('[{"epoch": 1, "training_')
    return runs


def workspace(root: Path, inputs: dict[str, Path]) -> dict[str, Path]:
    """The row's directory: pre-existing outputs, a regular file to write under, the placeholders' paths."""
    existing = root / "existing.h5"
    existing.write_bytes(np.random.default_rng(3).bytes(2048))
    existing_dir = root / "existing_dir"
    existing_dir.mkdir()
    (existing_dir / "metadata.json").write_text('{"kept": true}\n')
    (root / "blocker").write_text("a regular file, not a directory\n")
    return {
        **inputs,
        "existing": existing,
        "existing_dir": existing_dir,
        "blocker": root / "blocker",
        "missing": root / "missing.h5",
        "new": root / "new.h5",
        "new_dir": root / "new_dir",
    }


@pytest.mark.parametrize("row", CASES, ids=[row.id for row in CASES])
def test_fault_gives_one_line_and_leaves_everything_as_it_was(
    row: Case,
    tmp_path: Path,
    damaged_inputs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = workspace(tmp_path, damaged_inputs)
    argv = [arg.format(**{name: str(path) for name, path in paths.items()}) for arg in row.args]
    monkeypatch.chdir(tmp_path)
    for name, value in row.env.items():
        monkeypatch.setenv(name, value)
    if "TF_CONFIG" not in row.env:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    if row.fault is not None:
        row.fault(monkeypatch)
    main = importlib.import_module(MAINS[row.command]).main
    before = _tree_digest(tmp_path)
    capsys.readouterr()

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)

    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("caloml: error: "), err
    assert row.message in err, err
    assert _tree_digest(tmp_path) == before


def test_the_matrix_covers_every_command_line_with_at_least_60_rows() -> None:
    assert len(CASES) >= 130
    assert len({row.id for row in CASES}) == len(CASES)
    assert set(MAINS) == {row.command for row in CASES}
    faults = [row for row in CASES if row.fault is not None]
    assert {"simulate-disk-full", "convert-disk-full", "resample-disk-full", "evaluate-gen-disk-full"} <= {
        row.id for row in faults
    }
