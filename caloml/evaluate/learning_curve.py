"""The learning curve of 3DGAN training runs: validation metrics of every kept checkpoint against training progress.

``python -m caloml.evaluate curve --run RUN [RUN ...] --reference FILE.h5 --out DIR`` or, in a notebook::

    from caloml.evaluate import learning_curve
    curve = learning_curve(["runs/float32", "runs/bfloat16"], "reference.h5", "runs/curve", n_showers=200)
    curve["rows"]

For every run (a 3DGAN run directory with ``config.yaml`` and ``checkpoints/ckpt-<epoch>``; ``model.keras`` is not
needed, so a run stopped before its last epoch works) and every requested kept epoch, the model is rebuilt from the
run's configuration as the trainer builds it, the weights of that epoch are restored, and showers are generated
(:func:`caloml.generate.gan.iter_batches_at_conditions`, the same per-shower noise for every epoch and run) for the
conditions of the first ``n_showers`` usable events of the reference file. The metrics come from the evaluation
suite's code (:mod:`caloml.evaluate.features`, :mod:`~caloml.evaluate.comparison`,
:mod:`~caloml.evaluate.two_sample`) and the trainer's selection metric
(:func:`caloml.tasks.gan3d.sampling_fraction_error`). The time axis is the run's ``timing.json`` (showers seen,
cumulative training minutes) or, for older runs, the showers seen from ``config.yaml``. The report directory gets
``curve.json``, ``curve.csv``, ``curve.png`` and ``curve_time.png`` (:mod:`caloml.evaluate.learning_curve_plots`).

TensorFlow is imported inside the functions that need it, so that ``python -m caloml.evaluate`` parses its
arguments without it. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import caloml
from caloml.atomic_files import atomic_write_json, atomic_write_text
from caloml.cli_args import non_negative_seed, output_directory, positive_int
from caloml.data.hdf5 import open_reader
from caloml.data.lcd import LCDReader, LCDWriter
from caloml.errors import CalomlError, DataError
from caloml.evaluate.comparison import ColumnComparison, compare_features
from caloml.evaluate.features import HIT_THRESHOLD_GEV, extract_features
from caloml.evaluate.generative import EvaluationOptions, condition_binning, run_classifiers
from caloml.evaluate.inputs import open_pair
from caloml.evaluate.learning_curve_plots import plot_curve
from caloml.evaluate.two_sample import MIN_EVENTS
from caloml.json_values import json_plain
from caloml.progress import progress_bar
from caloml.quiet import import_tensorflow_quietly
from caloml.report_directory import check_report_dir, report_dir

__all__ = ["CSV_COLUMNS", "PRECISIONS", "add_curve_parser", "learning_curve", "parse_epochs", "run_curve"]

#: Arithmetic the generator can run in (``--precision``).
PRECISIONS = ("float32", "bfloat16")
#: Columns of ``curve.csv`` (the rows of ``curve.json`` have the same keys).
CSV_COLUMNS = (
    "run",
    "label",
    "epoch",
    "examples_seen",
    "training_minutes",
    "sampling_fraction_error_percent",
    "width_x_relative_error_percent",
    "width_y_relative_error_percent",
    "hits_relative_error_percent",
    "largest_separation_power",
    "largest_separation_power_observable",
    "auc_low_level",
    "auc_low_level_error",
    "auc_high_level",
    "auc_high_level_error",
    "evaluation_seconds",
)
#: What the report directory is, in error messages.
_WHAT = "learning curve"
#: The observables whose relative error of the mean is on the curve: column name -> observable.
_RELATIVE_ERRORS = {
    "width_x_relative_error_percent": "width_x",
    "width_y_relative_error_percent": "width_y",
    "hits_relative_error_percent": "hits",
}


@dataclass
class _Run:
    """One run directory: its configuration (``GanConfig``), located data, kept checkpoints and timings."""

    path: Path
    config: Any
    checkpoints: dict[int, str]
    epochs: list[int]
    timing: dict[int, dict[str, Any]] | None
    label: str


def parse_epochs(text: str) -> list[int] | None:
    """``all`` (None: every kept epoch) or a comma-separated list of positive epochs such as ``1,3,5``."""
    if text.strip().lower() == "all":
        return None
    try:
        epochs = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        epochs = []
    if not epochs or epochs[0] < 1:
        raise CalomlError(f"--epochs must be 'all' or positive epochs separated by commas (e.g. 1,3,5), got {text!r}")
    return epochs


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """Run the block in ``path``: a run's relative data paths (``tf_records/`` of the default data, ``--data``)
    are relative to the directory training was started in."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _launch_directory(run_path: Path, recorded: str) -> Path:
    """The directory training was started in: ``run_path`` without the trailing parts of the recorded
    ``runtime.run_dir`` when it is relative and matches, else the current directory."""
    recorded_parts = Path(recorded).parts
    if recorded and not Path(recorded).is_absolute():
        parts = run_path.resolve().parts
        if len(parts) > len(recorded_parts) and parts[-len(recorded_parts) :] == recorded_parts:
            return Path(*parts[: -len(recorded_parts)])
    return Path.cwd()


def _read_timing(path: Path) -> dict[int, dict[str, Any]] | None:
    if not path.exists():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        table = {int(row["epoch"]): row for row in rows}
        for row in table.values():
            float(row["training_seconds"]), int(row["examples_seen"])
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise CalomlError(f"{path}: unreadable timing file ({type(error).__name__}: {error})") from None
    return table


def _open_run(path: Path, epochs: Sequence[int] | None) -> _Run:
    """Check a run directory and read its configuration (CalomlError naming the run on any problem)."""
    from caloml.tasks.gan3d import GanConfig  # lazy: imports TensorFlow
    from caloml.training.config import resolve_config
    from caloml.training.run_directory import RunDirectory

    run = RunDirectory(path)
    if not path.is_dir():
        raise CalomlError(f"{path}: no such run directory")
    if not run.config.is_file():
        raise CalomlError(f"{path}: no config.yaml; not a training run directory")
    try:
        config = resolve_config(GanConfig, yaml_path=run.config)
    except (CalomlError, ValueError, TypeError) as error:
        raise CalomlError(f"{path}: not a 3DGAN run ({str(error).splitlines()[0][:200]})") from None
    checkpoints = {}
    for index in run.checkpoints.glob("ckpt-*.index") if run.checkpoints.is_dir() else []:
        number = index.name[len("ckpt-") : -len(".index")]
        if number.isdigit():
            checkpoints[int(number)] = str(index.with_suffix(""))
    if not checkpoints:
        raise CalomlError(f"{path}: no checkpoints (expected {run.checkpoints}/ckpt-<epoch>)")
    kept = sorted(checkpoints)
    selected = [e for e in epochs if e in checkpoints] if epochs else kept  # runs of other lengths: their share
    if not selected:
        raise CalomlError(
            f"{path}: none of the epochs {', '.join(map(str, epochs or []))} is kept; kept epochs: "
            + ", ".join(map(str, kept))
        )
    timing = _read_timing(run.timing)
    label = f"{path.name} ({config.runtime.mixed_precision or 'float32'})"
    return _Run(path, config, checkpoints, selected, timing, label)


def _build_model(run: _Run) -> tuple[Any, Any]:
    """The run's model as the trainer builds it (the task's ``build_model`` on its data), and the data."""
    from caloml.tasks.gan3d import TASK  # lazy: imports TensorFlow

    launch = _launch_directory(run.path, run.config.runtime.run_dir)
    try:
        with _working_directory(launch), contextlib.redirect_stdout(sys.stderr):  # stdout: the table only
            data = TASK.prepare_data(run.config, chief=False)  # never simulates: the run's data must be there
    except CalomlError as error:  # DataError included
        raise CalomlError(
            f"{run.path}: rebuilding its model needs the run's training data (the trained angle range), read from"
            f" {launch}: {str(error).splitlines()[0]}"
        ) from None
    return TASK.build_model(run.config, data), data


def _restore(model: Any, run: _Run, epoch: int) -> None:
    import tensorflow as tf  # lazy: see the module docstring

    prefix = run.checkpoints[epoch]
    try:
        tf.train.Checkpoint(model=model).restore(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError):
        raise CalomlError(f"{prefix}: the checkpoint does not fit the model of {run.path / 'config.yaml'}") from None


def _check_reference(path: Path, n_showers: int, runs: list[_Run]) -> list[str]:
    """Check the reference file before any long work; returns the keys to read from it."""
    if not path.is_file():
        raise DataError(f"{path}: reference file not found (missing)")
    with open_reader(path) as probe:  # DataError (one line naming the file) on a corrupt file
        if not isinstance(probe, LCDReader) or tuple(probe.event_shapes["ECAL"]) != (51, 51, 25):
            raise DataError(f"{path}: the reference must be an LCD file with a 51 x 51 x 25 ECAL")
        if n_showers > probe.n_events:
            raise CalomlError(f"{path}: -n {n_showers} is more than the reference's {probe.n_events} showers")
        keys: list[str] = [key for key in ("ECAL", "energy", "theta", "mtheta") if key in probe.keys]
    for run in runs:
        if run.config.model.condition_angle not in keys:
            raise DataError(f"{path}: no '{run.config.model.condition_angle}' key, the condition of {run.path}")
    return keys


def _reference_subset(
    path: Path, keys: list[str], n_showers: int, runs: list[tuple[_Run, Any]], out: Path
) -> dict[str, Any]:
    """Write the first ``n_showers`` events of ``path`` usable by every run (energy and angle condition within the
    trained ranges, ECAL deposit above the run's ``data.min_deposit_gev``) to ``out``; returns its description."""
    with LCDReader(path, chunk_events=64, keys=keys) as reader:
        parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        found = scanned = 0
        for chunk in reader.iter_chunks():
            usable = np.ones(len(chunk["energy"]), bool)
            deposit = chunk["ECAL"].sum(axis=(1, 2, 3), dtype=np.float64)
            for run, model in runs:
                angle = chunk[run.config.model.condition_angle]
                usable &= deposit > run.config.data.min_deposit_gev
                for values, (low, high) in ((chunk["energy"], model.energy_range_gev), (angle, model.theta_range_rad)):
                    usable &= (values >= low) & (values <= high)
            take = np.flatnonzero(usable)[: n_showers - found]
            for key in keys:
                parts[key].append(chunk[key][take])
            found += take.size
            scanned += len(usable)
            if found == n_showers:
                break
        if found < n_showers:
            ranges = "; ".join(
                f"{run.path}: {m.energy_range_gev[0]:.4g}-{m.energy_range_gev[1]:.4g} GeV,"
                f" {run.config.model.condition_angle} {m.theta_range_rad[0]:.4g}-{m.theta_range_rad[1]:.4g} rad"
                for run, m in runs
            )
            raise CalomlError(
                f"{path}: only {found} of its {reader.n_events} showers lie in the trained ranges ({ranges}) and pass"
                f" the deposit cut; -n {n_showers} needs more"
            )
    with LCDWriter(out, overwrite=True, compression_level=None) as writer:
        writer.append({key: np.concatenate(values) for key, values in parts.items()})
    return {"path": str(path), "n_showers": n_showers, "events_scanned": scanned}


def _largest_separation_power(comparisons: dict[str, list[ColumnComparison]]) -> tuple[float | None, str | None]:
    best: tuple[float, str] | None = None
    for name, columns in comparisons.items():
        for k, column in enumerate(columns):
            value = column.separation_power
            if value is not None and math.isfinite(value) and (best is None or value > best[0]):
                best = (float(value), name if len(columns) == 1 else f"{name}[{k}]")
    return best if best is not None else (None, None)


def _epoch_metrics(generated: Path, reference: Path, run: _Run, seed: int, classifier: bool) -> dict[str, Any]:
    """The curve's metrics of one generated file against the reference subset (see ``docs/evaluation.md``)."""
    from caloml.tasks.gan3d import sampling_fraction_error, selection_bin_edges  # lazy: imports TensorFlow

    with open_pair(generated, reference, chunk_events=64) as pair:
        options = EvaluationOptions(seed=seed, classifier=classifier, progress=False).resolved(pair.layout)
        indices = np.arange(pair.reference.n_events) if classifier else None
        features_gen, features_ref = (
            extract_features(source, low_level_indices=indices, low_level_theta=pair.has_theta)
            for source in (pair.generated, pair.reference)
        )
        angle_key, use_theta = pair.angle_key, pair.has_theta
    comparisons, _ = compare_features(
        features_gen,
        features_ref,
        condition_binning(features_gen, features_ref, options, use_theta=use_theta),
        n_bins=options.bins,
        min_bin_events=options.min_bin_events,
        alpha=options.alpha,
    )
    # the trainer's selection metric: equal primary-energy bins over the (reference) energies
    edges = selection_bin_edges(features_ref.energy_gev, run.config.trainer.selection_energy_bins)
    metrics: dict[str, Any] = {
        "sampling_fraction_error_percent": 100.0
        * sampling_fraction_error(
            features_ref.energy_gev,
            features_ref.observables["deposited_energy_gev"],
            features_gen.observables["deposited_energy_gev"],
            edges=edges,
        )
    }
    for column, name in _RELATIVE_ERRORS.items():
        metrics[column] = 100.0 * comparisons[name][0].relative_mean_error
    power, observable = _largest_separation_power(comparisons)
    metrics["largest_separation_power"] = power
    metrics["largest_separation_power_observable"] = observable
    result = run_classifiers(features_gen, features_ref, angle_key, options) if classifier else {}
    for kind in ("low_level", "high_level"):
        test = result.get(kind, {})
        metrics[f"auc_{kind}"] = test.get("auc")
        metrics[f"auc_{kind}_error"] = test.get("auc_stat_error")
    return metrics


def _time_axis(run: _Run, epoch: int, steps_per_epoch: int) -> tuple[int, float | None]:
    """(showers seen, cumulative training minutes or None) after ``epoch``."""
    from_config = epoch * steps_per_epoch * run.config.trainer.global_batch_size
    if run.timing is None:
        return from_config, None
    row = run.timing.get(epoch)
    examples = int(row["examples_seen"]) if row is not None else from_config
    if not all(e in run.timing for e in range(1, epoch + 1)):
        return examples, None  # an epoch without timing (e.g. trained before timing.json existed)
    seconds = sum(float(run.timing[e]["training_seconds"]) for e in range(1, epoch + 1))
    return examples, seconds / 60.0


#: Columns of the printed table: (row key, heading, format).
_TABLE = (
    ("epoch", "epoch", "5d"),
    ("examples_seen", "showers", "9d"),
    ("training_minutes", "min", "7.1f"),
    ("sampling_fraction_error_percent", "SF err%", "8.2f"),
    ("width_x_relative_error_percent", "wx err%", "8.2f"),
    ("width_y_relative_error_percent", "wy err%", "8.2f"),
    ("hits_relative_error_percent", "hits%", "7.1f"),
    ("largest_separation_power", "max SP", "7.3f"),
    ("auc_low_level", "AUC low", "8.3f"),
    ("auc_high_level", "AUC high", "8.3f"),
)


def _table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table (n/a for a metric not computed)."""

    def cell(value: Any, spec: str) -> str:
        width = int(spec.rstrip("dfe").split(".")[0])
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "n/a".rjust(width)
        return format(value, spec)

    lines = [f"{'run':<40} " + " ".join(heading.rjust(len(format(0, spec))) for _, heading, spec in _TABLE)]
    for row in rows:
        lines.append(f"{row['label'][:40]:<40} " + " ".join(cell(row[key], spec) for key, _, spec in _TABLE))
    return "\n".join(lines)


def learning_curve(
    runs: Sequence[str | Path],
    reference: str | Path,
    out_dir: str | Path,
    *,
    epochs: Sequence[int] | None = None,
    n_showers: int = 200,
    precision: str = "float32",
    seed: int = 1,
    classifier: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """The learning curve of 3DGAN runs against a reference LCD file; writes the report directory ``out_dir``.

    Args:
        runs: 3DGAN run directories (``config.yaml``, ``checkpoints/ckpt-<epoch>``; ``model.keras`` not needed).
        reference: LCD HDF5 file independent of the training data (e.g. simulated with another seed).
        out_dir: report directory (``curve.json``, ``curve.csv``, ``curve.png``, ``curve_time.png``); must not exist
            or be empty unless ``overwrite``.
        epochs: epochs to evaluate (each run evaluates those it keeps; each must be kept in some run); None:
            every kept epoch of every run.
        n_showers: showers generated per run and epoch, for the conditions of the first ``n_showers`` usable
            reference events (at least 500 for the classifier test, which is skipped with a note below that).
        precision: ``float32`` or ``bfloat16`` (Keras mixed_bfloat16) arithmetic of the generator.
        seed: seed of the noise (one stream per shower) and of the classifier test.
        classifier: run the classifier two-sample test (low-level and high-level inputs).

    Returns:
        The content of ``curve.json``: ``rows`` (one per run and epoch, the keys of :data:`CSV_COLUMNS`), ``runs``,
        ``arguments``, ``reference``, ``notes``.

    Raises:
        CalomlError: a run without checkpoints, an epoch not kept, a run that is not a 3DGAN run, a missing or
            corrupt reference, ``n_showers`` beyond the reference, an unreadable ``timing.json``; one line each.
    """
    from caloml.generate.gan import iter_batches_at_conditions  # lazy: these import TensorFlow
    from caloml.models.precision import model_in_precision, resolve_policy

    out = Path(out_dir)
    if isinstance(runs, (str, Path)):  # one run given bare, not as a list of its characters
        runs = [runs]
    if not runs:
        raise CalomlError("give at least one run directory")
    if n_showers < 1:
        raise CalomlError(f"the number of showers must be positive, got {n_showers}")
    if precision not in PRECISIONS:
        raise CalomlError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    check_report_dir(out, overwrite, _WHAT)
    reference = Path(reference)
    import_tensorflow_quietly()
    opened = [_open_run(Path(path), epochs) for path in runs]  # every run and the reference checked first
    missing = sorted(set(epochs or []) - {e for run in opened for e in run.epochs})
    if missing:
        kept = "; ".join(f"{run.path}: {', '.join(map(str, sorted(run.checkpoints)))}" for run in opened)
        raise CalomlError(f"epoch {', '.join(map(str, missing))} is kept in no run; kept epochs: {kept}")
    reference_keys = _check_reference(reference, n_showers, opened)
    labels = [run.label for run in opened]
    for run in opened:  # runs of the same directory name: the whole path tells their lines apart
        if labels.count(run.label) > 1:
            run.label = run.label.replace(run.path.name, str(run.path), 1)
    notes: list[str] = []
    policy = resolve_policy(precision)  # float32, with one warning line, on a machine without bfloat16 units
    precision_used = "bfloat16" if "bfloat16" in policy else "float32"
    if precision_used != precision:
        notes.append(f"{precision} requested, but this machine has no bfloat16 units: generated in {precision_used}")
    if precision_used != "float32":  # the label says how each run was trained and, here, how it generated
        for run in opened:
            run.label += f" generated in {precision_used}"
    use_classifier = classifier and n_showers >= MIN_EVENTS
    if classifier and not use_classifier:
        notes.append(f"classifier two-sample test skipped: it needs -n >= {MIN_EVENTS} (got {n_showers})")
    for run in opened:
        if run.timing is None:
            notes.append(f"{run.path}: no timing.json; showers seen from config.yaml, no training minutes")
    built = [(run, *_build_model(run)) for run in opened]
    arguments = {
        "runs": [str(run.path) for run in opened],
        "reference": str(reference),
        "epochs": "all" if epochs is None else list(epochs),
        "n_showers": n_showers,
        "precision": precision_used,
        "precision_requested": precision,
        "seed": seed,
        "classifier": classifier,
    }
    rows: list[dict[str, Any]] = []
    total = sum(len(run.epochs) for run in opened)
    with (
        tempfile.TemporaryDirectory(prefix="caloml-curve-") as tmp,
        progress_bar(total, desc="learning curve", unit="epoch", enabled=progress) as bar,
    ):
        reference_file = Path(tmp) / "reference.h5"
        reference_info = _reference_subset(
            reference, reference_keys, n_showers, [(r, m) for r, m, _ in built], reference_file
        )
        with LCDReader(reference_file) as subset:
            energy = subset.read_key("energy").reshape(-1)
            angles = {key: subset.read_key(key).reshape(-1) for key in ("theta", "mtheta") if key in subset.keys}
        for run, model, data in built:
            steps = run.config.trainer.steps_per_epoch or max(
                1, data.n_train_events // run.config.trainer.global_batch_size
            )
            for epoch in run.epochs:
                started = time.perf_counter()
                _restore(model, run, epoch)
                generator = model_in_precision(model, precision_used, for_this_machine=False)
                generated_file = Path(tmp) / "generated.h5"
                condition = angles[run.config.model.condition_angle]
                with LCDWriter(generated_file, overwrite=True, compression_level=None) as writer:
                    for batch in iter_batches_at_conditions(generator, energy, condition, seed=seed):
                        writer.append(batch)
                metrics = _epoch_metrics(generated_file, reference_file, run, seed, use_classifier)
                examples, minutes = _time_axis(run, epoch, steps)
                rows.append(
                    {
                        "run": str(run.path),
                        "label": run.label,
                        "epoch": epoch,
                        "examples_seen": examples,
                        "training_minutes": minutes,
                        **metrics,
                        "evaluation_seconds": round(time.perf_counter() - started, 2),
                    }
                )
                bar.update(1)
    record: dict[str, Any] = json_plain(
        {
            "caloml_version": caloml.__version__,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "curve",
            "seed": seed,
            "arguments": arguments,
            "reference": reference_info,
            "hit_threshold_gev": HIT_THRESHOLD_GEV,
            "runs": [
                {
                    "path": str(run.path),
                    "config": str(run.path / "config.yaml"),
                    "label": run.label,
                    "mixed_precision": run.config.runtime.mixed_precision or "float32",
                    "time_axis": "timing.json" if run.timing is not None else "config.yaml (no timing.json)",
                }
                for run in opened
            ],
            "notes": notes,
            "rows": [{key: row.get(key) for key in CSV_COLUMNS} for row in rows],
        }
    )
    with report_dir(out, overwrite, _WHAT) as folder:
        atomic_write_json(folder / "curve.json", record)
        text = io.StringIO()
        writer_csv = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer_csv.writeheader()
        writer_csv.writerows({k: "" if v is None else v for k, v in row.items()} for row in record["rows"])
        atomic_write_text(folder / "curve.csv", text.getvalue())
        plot_curve(folder / "curve.png", record["rows"], "examples_seen", "showers seen")
        plot_curve(folder / "curve_time.png", record["rows"], "training_minutes", "training time [min]")
    return record


# -- command line -------------------------------------------------------------------------------------------------
def add_curve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``curve``: the learning curve of 3DGAN runs from their checkpoints."""
    parser = subparsers.add_parser(
        "curve",
        help="learning curve of 3DGAN runs: validation metrics of every kept checkpoint",
        description=(
            "For every 3DGAN run and kept epoch: rebuild the model from config.yaml, restore the checkpoint, generate"
            " -n showers for the conditions of the first usable reference events and compute the sampling-fraction"
            " error, the relative errors of the mean widths and hit counts, the largest separation power and the"
            " classifier AUCs; against showers seen and training minutes (timing.json). Writes curve.json,"
            " curve.csv, curve.png and curve_time.png into --out."
        ),
    )
    parser.add_argument(
        "--run", dest="runs", required=True, nargs="+", type=Path, metavar="RUN", help="3DGAN run directories"
    )
    parser.add_argument("--reference", required=True, type=Path, metavar="FILE.h5", help="reference LCD showers")
    parser.add_argument("--out", required=True, type=output_directory, metavar="DIR", help="report directory")
    parser.add_argument(
        "--epochs", type=parse_epochs, default=None, metavar="LIST|all", help="e.g. 1,3,5 (default all kept)"
    )
    parser.add_argument("-n", "--showers", type=positive_int, default=200, help="showers per epoch (default 200)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="generator arithmetic")
    parser.add_argument("--seed", type=non_negative_seed, default=1, help="seed of every random draw (default 1)")
    parser.add_argument("--no-classifier", action="store_true", help="skip the classifier two-sample test")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_curve(args: argparse.Namespace) -> int:
    """Compute the learning curve and print its table."""
    record = learning_curve(
        args.runs,
        args.reference,
        args.out,
        epochs=args.epochs,
        n_showers=args.showers,
        precision=args.precision,
        seed=args.seed,
        classifier=not args.no_classifier,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    for note in record["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(_table(record["rows"]))
    print(f"learning curve: {Path(args.out) / 'curve.json'}")
    return 0
