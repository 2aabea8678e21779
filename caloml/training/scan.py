"""Hyperparameter scans with repeated seeds over the shared trainer (``python -m caloml.scan``).

A scan is a list of grid points (assignments of configuration keys) times a number of repeats; every (point,
repeat) pair is one ordinary training run of :func:`caloml.training.trainer.train` with ``runtime.seed = base
seed + repeat`` in ``RUN_ROOT/<point name>/seed-<seed>``. Each run's selection value is collected, and per point
the mean, the sample standard deviation, the standard error and every repeat's value go to ``RUN_ROOT/scan.json``
and ``RUN_ROOT/scan.md``, best first. Finished runs are read, not retrained, so an interrupted scan resumes.
Models that fit themselves (the baselines) are read from their ``summary.json`` (:func:`baseline_selection`).
Grid presets (:data:`GRID_PRESETS`) are seeded random subsets of the grids of "Calorimetry with deep learning:
particle simulation and reconstruction for collider physics" (Belayneh et al., Eur. Phys. J. C 80 (2020) 688,
arXiv:1912.06794). See ``docs/training.md``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from caloml.atomic_files import atomic_write_json, atomic_write_text
from caloml.errors import CalomlError
from caloml.training.config import config_to_dict, read_config_dict
from caloml.training.run_directory import RunDirectory, config_differences

__all__ = [
    "GRID_PRESETS",
    "GridPreset",
    "ScanPoint",
    "ScanRun",
    "baseline_finished",
    "baseline_selection",
    "finished_value",
    "grid_points",
    "parse_grid_axis",
    "parse_grid_value",
    "point_name",
    "preset_points",
    "run_scan",
    "sample_points",
    "summarize",
]


@dataclass(frozen=True)
class GridPreset:
    """A named grid: ``axes`` (key -> values), the ``best`` point always included, and a default subset size."""

    axes: Mapping[str, tuple[Any, ...]]
    best: Mapping[str, Any]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    default_points: int = 10
    description: str = ""


_LAYERS = (1, 2, 3, 4, 5)
_UNITS = (128, 256, 512, 1024, 2048)
_LEARNING_RATES = (1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4, 7e-4)
_DROPOUTS = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.14)

#: The Triforce paper's scan grids (arXiv:1912.06794, section 5.2), for the ``triforce`` task's keys.
GRID_PRESETS: dict[str, GridPreset] = {
    "paper-dnn": GridPreset(
        axes={
            "model.n_hidden_layers": _LAYERS,
            "model.hidden_units": _UNITS,
            "model.learning_rate": _LEARNING_RATES,
            "model.dropout": _DROPOUTS,
        },
        best={
            "model.n_hidden_layers": 4,
            "model.hidden_units": 512,
            "model.learning_rate": 2e-4,
            "model.dropout": 0.04,
        },
        fixed={"model.arch": "dnn"},
        description="DNN: layers 1-5, units 128-2048, learning rate 1e-4 - 7e-4, dropout 0.02 - 0.14",
    ),
    "paper-cnn": GridPreset(
        axes={
            "model.n_hidden_layers": _LAYERS,
            "model.hidden_units": _UNITS,
            "model.learning_rate": _LEARNING_RATES,
            "model.dropout": _DROPOUTS,
            "model.ecal_filters": (1, 2, 3, 4, 5, 6),
            "model.ecal_kernel": (2, 3, 4, 5, 6),
        },
        best={
            "model.n_hidden_layers": 4,
            "model.hidden_units": 512,
            "model.learning_rate": 4e-4,
            "model.dropout": 0.12,
            "model.ecal_filters": 6,
            "model.ecal_kernel": 6,
        },
        fixed={"model.arch": "cnn"},
        description="CNN: the DNN grid x ECAL filters 1-6 x ECAL kernel edges 2-6",
    ),
}


@dataclass(frozen=True)
class ScanPoint:
    """One grid point: its directory name and its configuration values (dotted key -> value)."""

    name: str
    values: Mapping[str, Any]


@dataclass
class ScanRun:
    """One (point, seed) run: where it is, its selection value and whether this invocation trained it."""

    point: str
    seed: int
    run_dir: Path
    value: float | None = None
    selected_epoch: int | None = None
    #: "trained" (by this invocation), "read" (finished before), "pending"; a non-finite selection value (a diverged
    #: run) is noted here and ``value`` stays None, out of the statistics.
    status: str = "pending"


# -- grids -------------------------------------------------------------------------------------------------------------
def parse_grid_value(text: str) -> Any:
    """One grid value from the command line: an integer, a number (``1e-4`` too), or a YAML scalar (true, null, a
    string)."""
    text = text.strip()
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_grid_axis(text: str) -> tuple[str, tuple[Any, ...]]:
    """``"model.hidden_units=128,512"`` -> ("model.hidden_units", (128, 512)); CalomlError when malformed."""
    key, sep, values = text.partition("=")
    key = key.strip()
    items = [v for v in values.split(",") if v.strip()]
    if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", key) or not items:
        raise CalomlError(f"--grid {text!r}: expected section.key=V1,V2,... (e.g. model.hidden_units=128,512)")
    parsed = tuple(parse_grid_value(v) for v in items)
    if len(set(map(repr, parsed))) != len(parsed):
        raise CalomlError(f"--grid {text!r}: repeated values")
    return key, parsed


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return re.sub(r"[^\w.+-]", "_", str(value))


def point_name(values: Mapping[str, Any], shown: Sequence[str] | None = None) -> str:
    """Directory name of a point: ``key-value`` of the ``shown`` keys (default all) joined by ``__``, each key by its
    last component unless two shown keys share it (then the whole dotted key)."""
    keys = list(values) if shown is None else list(shown)
    if not keys:
        return "point"
    last = [k.rsplit(".", 1)[-1] for k in keys]
    labels = [short if last.count(short) == 1 else key for key, short in zip(keys, last, strict=True)]
    return "__".join(f"{label}-{_format_value(values[key])}" for label, key in zip(labels, keys, strict=True))


def grid_points(axes: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any] | None = None) -> list[ScanPoint]:
    """The Cartesian product of ``axes`` in order (the last axis fastest), each point with the ``fixed`` values too;
    names show the axes with more than one value."""
    shown = [key for key, values in axes.items() if len(values) > 1]
    points = []
    for combination in itertools.product(*axes.values()):
        values = {**(fixed or {}), **dict(zip(axes, combination, strict=True))}
        points.append(ScanPoint(point_name(values, shown), values))
    return points


def sample_points(
    points: Sequence[ScanPoint], n_points: int, seed: int, first: Mapping[str, Any] | None = None
) -> list[ScanPoint]:
    """``n_points`` of ``points`` drawn without replacement (seeded), in grid order; the point whose values include
    ``first`` (if any) is always kept and comes first."""
    if n_points < 1:
        raise CalomlError(f"--points must be at least 1, got {n_points}")
    if n_points >= len(points):
        return list(points)
    keep = [i for i, p in enumerate(points) if first and all(p.values.get(k) == v for k, v in first.items())][:1]
    others = [i for i in range(len(points)) if i not in keep]
    rng = np.random.default_rng(seed)
    drawn = sorted(rng.choice(len(others), size=n_points - len(keep), replace=False).tolist())
    return [points[i] for i in keep] + [points[others[j]] for j in drawn]


def preset_points(name: str, n_points: int | None, seed: int) -> list[ScanPoint]:
    """The points of preset ``name``: its best point plus a seeded random subset (``n_points`` in all)."""
    if name not in GRID_PRESETS:
        raise CalomlError(f"unknown grid preset {name!r}; choose one of {', '.join(GRID_PRESETS)}")
    preset = GRID_PRESETS[name]
    points = grid_points(preset.axes, preset.fixed)
    return sample_points(points, preset.default_points if n_points is None else n_points, seed, preset.best)


# -- runs --------------------------------------------------------------------------------------------------------------
def finished_value(run_dir: Path, config: Mapping[str, Any]) -> tuple[float, int, bool] | None:
    """(selection value, selected epoch, lower is better) of a finished run with the same configuration (up to the
    resumable keys, and at least as many epochs); None when the run is not finished there."""
    run = RunDirectory(run_dir)
    if not (run.model.is_file() and run.selection.is_file() and run.config.is_file()):
        return None
    try:
        old = read_config_dict(run.config)
        record = json.loads(run.selection.read_text())
        selected = int(record["selected_epoch"])
        values = {int(e["epoch"]): float(e["value"]) for e in record["epochs"]}
        old_epochs = int(old["trainer"]["epochs"])
    except (CalomlError, OSError, ValueError, KeyError, TypeError):
        return None
    if config_differences(old, dict(config)) or old_epochs < int(config["trainer"]["epochs"]):
        return None
    if selected not in values:
        return None
    return values[selected], selected, bool(record.get("lower_is_better", True))


def baseline_finished(run_dir: Path, config: Mapping[str, Any]) -> bool:
    """Whether a self-fitting baseline's run is complete there (``summary.json``) with the same configuration."""
    run = RunDirectory(run_dir)
    if not ((run_dir / "summary.json").is_file() and run.config.is_file()):
        return False
    try:
        old = read_config_dict(run.config)
    except CalomlError:
        return False
    return not config_differences(old, dict(config))


def baseline_selection(run_dir: Path) -> tuple[float, int | None, bool, str, str]:
    """(value, None, lower is better, metric, description) of a baseline run from its ``summary.json``: the BDT's
    validation log-loss at its chosen search point, or a regression's validation relative RMS error (module
    docstring). CalomlError when the summary records neither."""
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CalomlError(f"{run_dir}: no readable summary.json; the fit did not finish") from None
    chosen = summary.get("chosen") if isinstance(summary, dict) else None
    metrics = summary.get("validation_metrics") if isinstance(summary, dict) else None
    if isinstance(chosen, dict) and "validation_logloss" in chosen:
        return (
            float(chosen["validation_logloss"]),
            None,
            True,
            "validation_logloss",
            "the BDT's log-loss on the validation split at the point its own search chose",
        )
    if isinstance(metrics, dict) and {"relative_bias", "relative_resolution"} <= set(metrics):
        bias, resolution = float(metrics["relative_bias"]), float(metrics["relative_resolution"])
        return (
            math.sqrt(bias**2 + resolution**2),
            None,
            True,
            "validation_relative_rms",
            "relative RMS error sqrt(mean(((E_true - E_pred) / E_true)^2)) of the energy on the validation split",
        )
    raise CalomlError(f"{path}: records no validation log-loss or relative bias and resolution for a scan to compare")


def _selection_of(run_dir: Path) -> tuple[float, int | None, bool, str, str]:
    run = RunDirectory(run_dir)
    if not run.selection.is_file():
        raise CalomlError(
            f"{run_dir}: the run wrote no selection.json: this model has no selection metric, which a scan needs"
        )
    record = json.loads(run.selection.read_text())
    values = {int(e["epoch"]): float(e["value"]) for e in record["epochs"]}
    selected = int(record["selected_epoch"])
    return (
        values[selected],
        selected,
        bool(record.get("lower_is_better", True)),
        str(record.get("metric", "")),
        str(record.get("description", "")),
    )


def summarize(runs: Sequence[ScanRun], points: Sequence[ScanPoint], lower_is_better: bool = True) -> list[dict]:
    """Per point: its values, the per-repeat values, mean, sample standard deviation (ddof 1), standard error and
    runs, over the runs with a finite value (``n``); sorted best first (points without any such run last)."""
    rows = []
    for point in points:
        mine = [r for r in runs if r.point == point.name]
        values = [r.value for r in mine if r.value is not None]
        n = len(values)
        mean = float(np.mean(values)) if n else None
        std = float(np.std(values, ddof=1)) if n > 1 else None
        rows.append(
            {
                "name": point.name,
                "values": dict(point.values),
                "n": n,
                "mean": mean,
                "std": std,
                "sem": None if std is None else std / math.sqrt(n),
                "repeats": [
                    {
                        "seed": r.seed,
                        "value": r.value,
                        "selected_epoch": r.selected_epoch,
                        "status": r.status,
                        "run_dir": str(r.run_dir),
                    }
                    for r in mine
                ],
            }
        )
    sign = 1.0 if lower_is_better else -1.0

    def order(row: dict[str, Any]) -> tuple[bool, float]:
        mean = row["mean"]
        return (mean is None, 0.0 if mean is None else sign * float(mean))

    rows.sort(key=order)
    return rows


def _markdown(summary: Mapping[str, Any]) -> str:
    rows = summary["points"]
    keys = list(summary["grid"])
    direction = "lower" if summary["lower_is_better"] else "higher"
    lines = [
        f"# Scan of `{summary['model']}`: {summary['metric']} ({direction} is better)",
        "",
        f"{summary['description']}".strip(),
        "",
        f"Repeats per point: {summary['repeats']} (seeds {', '.join(map(str, summary['seeds']))}); run root "
        f"`{summary['run_root']}`; {summary['n_finished']} of {summary['n_runs']} runs finished. Spread: sample "
        "standard deviation over the repeats (ddof 1).",
        "",
        "| rank | point | " + " | ".join(k.rsplit(".", 1)[-1] for k in keys) + " | mean | std | per repeat |",
        "|---:|---|" + "---:|" * len(keys) + "---:|---:|---|",
    ]

    def number(value: Any) -> str:
        return "" if value is None else f"{value:.4g}"

    for rank, row in enumerate(rows, start=1):
        each = ", ".join(number(r["value"]) if r["value"] is not None else "-" for r in row["repeats"])
        cells = " | ".join(_format_value(row["values"].get(k)) for k in keys)
        lines.append(f"| {rank} | `{row['name']}` | {cells} | {number(row['mean'])} | {number(row['std'])} | {each} |")
    return "\n".join(lines) + "\n"


def run_scan(
    *,
    model: str,
    points: Sequence[ScanPoint],
    repeats: int,
    base_seed: int,
    run_root: Path,
    resolve: Callable[[Mapping[str, Any], int, Path], Any],
    train_run: Callable[[Any], None],
    provenance: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    self_fitting: bool = False,
) -> dict[str, Any]:
    """Train (or read) every (point, repeat) run and write ``scan.json`` and ``scan.md`` under ``run_root``.

    ``resolve(values, seed, run_dir)`` returns the resolved configuration of one run (the point's ``values``
    applied, ``runtime.seed`` and ``runtime.run_dir`` set); ``train_run(config)`` trains it with the shared
    trainer. The summary is rewritten after every run, so that a partial scan can be read. Returns the summary.
    ``self_fitting``: the runs are baselines fitted by ``task.fit`` (finished runs and values read from their
    ``summary.json``: :func:`baseline_finished`, :func:`baseline_selection`), not the Keras trainer's.
    """
    if repeats < 1:
        raise CalomlError(f"--repeats must be at least 1, got {repeats}")
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise CalomlError("two grid points have the same name; give distinct values")
    seeds = [base_seed + r for r in range(repeats)]
    runs = [ScanRun(p.name, s, run_root / p.name / f"seed-{s}") for p in points for s in seeds]
    configs = {}
    for point in points:  # every configuration is resolved (and checked) before the first run trains
        for seed in seeds:
            configs[point.name, seed] = resolve(point.values, seed, run_root / point.name / f"seed-{seed}")
    grid: dict[str, list[Any]] = {}
    for point in points:
        for key, value in point.values.items():
            if value not in grid.setdefault(key, []):
                grid[key].append(value)
    summary: dict[str, Any] = {
        "model": model,
        "metric": "",
        "description": "",
        "lower_is_better": True,
        "repeats": repeats,
        "seeds": seeds,
        "run_root": str(run_root),
        "grid": grid,
        **dict(provenance or {}),
    }

    def write() -> None:
        summary["points"] = summarize(runs, points, summary["lower_is_better"])
        summary["n_runs"] = len(runs)
        summary["n_finished"] = sum(r.status != "pending" for r in runs)
        summary["best"] = summary["points"][0]["name"] if summary["points"][0]["mean"] is not None else None
        atomic_write_json(run_root / "scan.json", summary)
        atomic_write_text(run_root / "scan.md", _markdown(summary))

    run_root.mkdir(parents=True, exist_ok=True)
    for index, run in enumerate(runs, start=1):
        config = configs[run.point, run.seed]
        label = f"[{index}/{len(runs)}] {run.point} seed {run.seed}"
        if self_fitting:
            finished = baseline_finished(run.run_dir, config_to_dict(config))
        else:
            finished = finished_value(run.run_dir, config_to_dict(config)) is not None
        if finished:
            run.status = "read"
            log(f"{label}: finished before, read from {run.run_dir}")
        else:
            log(f"{label}: training in {run.run_dir}")
            train_run(config)
            run.status = "trained"
        selection = baseline_selection if self_fitting else _selection_of
        value, run.selected_epoch, lower, metric, description = selection(run.run_dir)
        if math.isfinite(value):
            run.value = value
        else:  # a diverged run: kept out of the statistics, recorded as such
            run.status = f"{run.status}, non-finite value {value}"
            log(f"{label}: the selection value is {value}; the run is left out of the statistics")
        summary.update(lower_is_better=lower, metric=metric, description=description)
        write()
    log(f"wrote {run_root / 'scan.json'} and {run_root / 'scan.md'}; best point: {summary['best']}")
    return summary
