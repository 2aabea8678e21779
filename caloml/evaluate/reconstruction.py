"""Reconstruction evaluation: Triforce networks against the baselines on the same test events.

``python -m caloml.evaluate reco --test FILE_OR_RUN_DIR ... --model PATH ... --out DIR [--task ...]`` or, in a
notebook::

    from caloml.evaluate.reconstruction import evaluate_reconstruction
    metrics = evaluate_reconstruction(["runs/triforce-dnn"], ["runs/triforce-dnn", "runs/bdt", "runs/linreg"],
                                      "runs/eval-reco")
    metrics["comparison"]["rows"]

Models: :mod:`caloml.evaluate.reconstruction_models`; test events: :mod:`caloml.evaluate.reconstruction_sources`
and :mod:`caloml.evaluate.reconstruction_batches`; metrics: :mod:`caloml.observables.reconstruction_metrics`. Every
model predicts the same events, read once, chunk by chunk; a model whose run recorded its split is never scored on
events that run trained or validated on. Classification: ROC, AUC, accuracy in bins of energy and eta (class 1, the
pion, is positive). Regression, per particle type: relative bias and resolution in bins of the true energy, the fit
``sigma / E = sqrt(a^2 / E + b^2 + (c / E)^2)`` and the ratio to a linear regression; charged pions below the
raw-sum cut (:data:`caloml.particles.CHPI_MIN_RAW_FRACTION`) are left out of the regression metrics. ``--precision
bfloat16`` evaluates the Triforce networks in bfloat16 arithmetic (the baselines are unaffected). The report
directory (``metrics.json`` with the top-level keys :data:`JSON_KEYS`, ``comparison.md``, ``arguments.json``,
``predictions.npz``, plots) is built aside and renamed into place. See ``docs/reconstruction.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from caloml.cli_args import non_negative_seed, output_directory, positive_float, positive_int
from caloml.data.reconstruction_tasks import TASKS, ReconstructionTask, raw_energy_fraction, regression_subject
from caloml.data.resampling import RESAMPLE_CHOICES, check_resample
from caloml.errors import CalomlError
from caloml.evaluate import reconstruction_plots as plots
from caloml.evaluate.reconstruction_batches import ROW_KEY, iter_test_batches
from caloml.evaluate.reconstruction_models import (
    ReconstructionModel,
    check_model_resample,
    check_model_splits,
    load_models,
    networks_in_precision,
)
from caloml.evaluate.reconstruction_sources import infer_task, resolve_resample, resolve_test_sources
from caloml.evaluate.reconstruction_table import comparison_markdown, comparison_table
from caloml.evaluate.report import HEADER_KEYS, report_header
from caloml.evaluate.two_sample import auc_standard_error
from caloml.json_values import json_plain
from caloml.observables.reconstruction_metrics import (
    LCD_ECAL_REFERENCE,
    binned_accuracy,
    binned_response,
    classification_metrics,
    energy_edges,
    fit_resolution,
)
from caloml.particles import CHPI_MIN_RAW_FRACTION, PDG_PARTICLE
from caloml.quiet import import_tensorflow_quietly
from caloml.report_directory import check_report_dir, report_dir

__all__ = [
    "JSON_KEYS",
    "PRECISIONS",
    "ReconstructionOptions",
    "add_reco_parser",
    "comparison_table",
    "evaluate_reconstruction",
    "run_reco",
]

JSON_KEYS: tuple[str, ...] = (
    *HEADER_KEYS,
    "task",
    "test",
    "models",
    "classification",
    "regression",
    "regression_selection",
    "reference_resolution",
    "comparison",
    "plots",
    "timings_s",
)
LINEAR_KIND = "linear_energy_regression"
#: The arithmetic of the Triforce networks (``--precision``): the names of :data:`caloml.models.precision.PRECISIONS`,
#: repeated here because python -m caloml.evaluate parses its arguments without TensorFlow.
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")


@dataclasses.dataclass
class ReconstructionOptions:
    """Options of :func:`evaluate_reconstruction` (each a ``--flag`` of the command line).

    Attributes:
        task: ``e-vs-pi`` or ``gamma-vs-pi0``; None: from the test_events.json files or the files' particles.
        seed: seed of Keras' random state (the evaluation itself draws nothing at random); recorded.
        energy_bin_width_gev, energy_low_gev, energy_high_gev: true-energy bins (25 GeV from 10 to 510 GeV).
        eta_bins: bins of eta between the smallest and largest eta of the test events.
        min_bin_events: fewest events of a bin for its bias and resolution (fewer: NaN, not fitted).
        chunk_events: events read and predicted at once (bounds the memory).
        resample: ``none``, ``atlas`` or ``cms``, the ECAL granularity of the test events
            (:func:`caloml.data.resampling.resample_events`); None: the one the ``--test`` runs' ``test_events.json``
            record (they must agree), ``none`` without runs. A value contradicting a test run's or a model run's
            record is refused (:func:`caloml.evaluate.reconstruction_sources.resolve_resample`,
            :func:`~caloml.evaluate.reconstruction_models.check_model_resample`). Resolved before it is recorded.
        precision: the arithmetic of the Triforce networks, ``float32`` or ``bfloat16`` (Keras' ``mixed_bfloat16``:
            bfloat16 arithmetic on the same float32 weights; float32 on a machine without bfloat16 units, with one
            warning line). The baselines are unaffected. Resolved (the precision in force) before it is recorded;
            the request is ``precision_requested`` in ``arguments.json``.
        plots: draw the PNG figures (False: metrics only, faster).
        overwrite: replace an existing report directory.
        progress: print progress to stderr.
    """

    task: str | None = None
    seed: int = 1
    energy_bin_width_gev: float = 25.0
    energy_low_gev: float = 10.0
    energy_high_gev: float = 510.0
    eta_bins: int = 10
    min_bin_events: int = 5
    chunk_events: int = 128
    resample: str | None = None
    precision: str = "float32"
    plots: bool = True
    overwrite: bool = False
    progress: bool = True

    def check(self) -> None:
        """One-line CalomlError for an invalid option."""
        if self.task is not None and self.task not in TASKS:
            raise CalomlError(f"unknown reconstruction task {self.task!r}; choose one of {', '.join(TASKS)}")
        if not (self.energy_bin_width_gev > 0 and self.energy_high_gev > self.energy_low_gev > 0):
            raise CalomlError(
                f"energy bins need a positive width and 0 < low < high, got {self.energy_bin_width_gev} GeV, "
                f"[{self.energy_low_gev}, {self.energy_high_gev}] GeV"
            )
        for name in ("eta_bins", "min_bin_events", "chunk_events"):
            if int(getattr(self, name)) < 1:
                raise CalomlError(f"{name} must be positive, got {getattr(self, name)}")
        if self.resample is not None:
            check_resample(self.resample, where="resample")
        if self.precision not in PRECISIONS:
            raise CalomlError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")


# -- prediction -------------------------------------------------------------------------------------------------------
def _predict_all(
    models: Sequence[ReconstructionModel], sources: Sequence[Any], task: ReconstructionTask, opts: ReconstructionOptions
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-event truth and predictions of every model on the test events, and the bookkeeping of the reading."""
    columns: dict[str, list[np.ndarray]] = {
        key: [] for key in ("energy", "eta", "pdgID", "class_label", "file_index", "row", "raw_fraction")
    }
    for model in models:
        if model.classifier:
            columns[f"score/{model.name}"] = []
        if model.regressor:
            columns[f"energy/{model.name}"] = []
    rows_read = [0] * len(sources)
    rows_kept = [0] * len(sources)
    eta_keys: set[str] = set()
    assert opts.resample is not None  # resolved by evaluate_reconstruction
    for batch in iter_test_batches(sources, task, chunk_events=opts.chunk_events, resample=opts.resample):
        events = batch.events
        rows_read[batch.source_index] += batch.rows_read
        n = len(events["energy"])
        rows_kept[batch.source_index] += n
        if n == 0:
            continue
        eta_key = "eta" if "eta" in events else "recoEta"
        eta_keys.add(eta_key)
        columns["energy"].append(np.asarray(events["energy"], np.float64))
        columns["eta"].append(np.asarray(events[eta_key], np.float64))
        columns["pdgID"].append(np.abs(np.asarray(events["pdgID"], np.int64)))
        columns["class_label"].append(np.asarray(events["class_label"], np.int64))
        columns["file_index"].append(np.full(n, batch.source_index, np.int64))
        columns["row"].append(np.asarray(events[ROW_KEY], np.int64))
        columns["raw_fraction"].append(raw_energy_fraction(events))
        for model in models:
            score, energy = model.predict(events)
            for key, values in ((f"score/{model.name}", score), (f"energy/{model.name}", energy)):
                if key in columns:
                    assert values is not None
                    if values.shape != (n,):
                        raise CalomlError(f"{model.path}: predicted {values.shape} values for {n} events")
                    if np.any(np.isnan(values) & (key.startswith("score/"))):
                        raise CalomlError(f"{model.path}: predicts NaN class probabilities")
                    columns[key].append(values)
    if not columns["energy"]:
        raise CalomlError("no test event passes the task's filters")
    predictions = {key: np.concatenate(parts) for key, parts in columns.items()}
    if len(eta_keys) > 1:
        raise CalomlError("some test files have the true 'eta' and others not; eta bins would mix two quantities")
    info = {
        "rows_read": rows_read,
        "rows_after_filters": rows_kept,
        "eta_key": eta_keys.pop(),
    }
    return predictions, info


# -- metrics ----------------------------------------------------------------------------------------------------------
def _eta_edges(eta: np.ndarray, n_bins: int) -> np.ndarray:
    low, high = float(np.min(eta)), float(np.max(eta))
    if high - low < 1e-6:
        low, high = low - 0.05, high + 0.05
    return np.linspace(low, high, n_bins + 1)


def _classification(
    models: Sequence[ReconstructionModel], predictions: dict[str, np.ndarray], opts: ReconstructionOptions
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray, float, bool]]]:
    labels = predictions["class_label"]
    e_edges = energy_edges(opts.energy_bin_width_gev, opts.energy_low_gev, opts.energy_high_gev)
    eta_edges = _eta_edges(predictions["eta"], opts.eta_bins)
    results: dict[str, Any] = {}
    curves = {}
    for model in models:
        if not model.classifier:
            continue
        scores = predictions[f"score/{model.name}"]
        metrics = classification_metrics(labels, scores)
        metrics["auc_error"] = auc_standard_error(metrics["auc"], *metrics["n_per_class"][::-1])  # class 1 positive
        full = metrics.pop("roc_full")
        correct = (scores >= 0.5) == (labels == 1)
        metrics["accuracy_vs_energy"] = binned_accuracy(predictions["energy"], correct, e_edges)
        metrics["accuracy_vs_eta"] = binned_accuracy(predictions["eta"], correct, eta_edges)
        results[model.name] = metrics
        curves[model.name] = (full["fpr"], full["tpr"], metrics["auc"], model.baseline)
    return results, curves


def _regression(
    models: Sequence[ReconstructionModel],
    predictions: dict[str, np.ndarray],
    task: ReconstructionTask,
    opts: ReconstructionOptions,
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    edges = energy_edges(opts.energy_bin_width_gev, opts.energy_low_gev, opts.energy_high_gev)
    pdg = predictions["pdgID"]
    selection = {}
    masks = {}
    for code, particle in zip(task.classes, task.particles, strict=True):
        of_particle = pdg == code
        mask = regression_subject(pdg, predictions["raw_fraction"], code)
        masks[particle] = mask
        counts = np.histogram(predictions["energy"][mask], edges)[0]
        populated = np.flatnonzero(counts >= max(2, opts.min_bin_events))
        low = int(populated[0]) if populated.size else None
        high = int(populated[-1]) if populated.size else None
        selection[particle] = {
            "events": int(of_particle.sum()),
            "used": int(mask.sum()),
            "cut": f"raw sum >= {CHPI_MIN_RAW_FRACTION} x true energy" if particle == "chpi" else None,
            "low_bin": low,
            "high_bin": high,
            "low_bin_gev": None if low is None else [float(edges[low]), float(edges[low + 1])],
            "high_bin_gev": None if high is None else [float(edges[high]), float(edges[high + 1])],
        }
    linear = next((m.name for m in models if m.kind == LINEAR_KIND), None)
    results: dict[str, Any] = {}
    for model in models:
        if not model.regressor:
            continue
        predicted = predictions[f"energy/{model.name}"]
        per_particle = {}
        for particle, mask in masks.items():
            usable = mask & np.isfinite(predicted)
            if not np.any(usable):
                continue
            binned = binned_response(
                predictions["energy"][usable], predicted[usable], edges, min_events=opts.min_bin_events
            )
            fit = fit_resolution(binned["mean_energy_gev"], binned["resolution"], binned["resolution_error"])
            per_particle[particle] = {"n_events": int(usable.sum()), "binned": binned, "fit": fit}
        results[model.name] = per_particle
    for per_particle in results.values():
        for particle, result in per_particle.items():
            reference = results.get(linear or "", {}).get(particle) if linear else None
            if reference is None:
                result["linear_over_model"] = None
                continue
            with np.errstate(invalid="ignore", divide="ignore"):
                result["linear_over_model"] = reference["binned"]["resolution"] / result["binned"]["resolution"]
    return results, selection, linear


# -- the evaluation ---------------------------------------------------------------------------------------------------
def _draw(folder: Path, record: dict[str, Any], curves: dict, models: Sequence[ReconstructionModel]) -> list[str]:
    baselines = {m.name for m in models if m.baseline}
    particles = record["task"]["particles"]
    names = []
    classification = record["classification"]
    regression = record["regression"]
    if classification:
        names.append(plots.plot_roc(folder, curves, record["task"]["name"]))
        names.append(
            plots.plot_accuracy(
                folder, "accuracy_vs_energy.png", classification, "energy", "true energy (GeV)", baselines
            )
        )
        eta_label = "true η" if record["test"]["eta_key"] == "eta" else "reconstructed η"
        names.append(plots.plot_accuracy(folder, "accuracy_vs_eta.png", classification, "eta", eta_label, baselines))
    if regression:
        names.append(plots.plot_bias(folder, regression, particles, baselines))
        names.append(plots.plot_resolution(folder, regression, particles, baselines))
        linear = record["comparison"]["linear_reference"]
        if linear is not None and len(regression) > 1:
            names.append(plots.plot_resolution_ratio(folder, regression, particles, linear, baselines))
    return names


def evaluate_reconstruction(
    test: Sequence[str | Path],
    models: Sequence[str | Path],
    out_dir: str | Path,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate reconstruction models on the same test events and write the report directory (module docstring).

    Args:
        test: LCD HDF5 files, TFRecord directories and run directories with ``test_events.json``.
        models: ``.keras`` files or run directories of Triforce networks, and baseline directories.
        out_dir: the report directory; must not exist or be empty unless ``overwrite=True``.
        **options: the fields of :class:`ReconstructionOptions` (``task``, ``seed``, ``energy_bin_width_gev``...).

    Returns:
        The content of ``metrics.json``.

    Raises:
        CalomlError: a missing or malformed input, a model of the wrong kind, a test file without HCAL or a feature
            a model needs, a class without test events, NaN values, an existing report, a model whose run
            trained or validated on some of the test events; one line each.
    """
    try:
        opts = ReconstructionOptions(**options)
    except TypeError as error:
        known = ", ".join(f.name for f in dataclasses.fields(ReconstructionOptions))
        raise CalomlError(f"evaluate_reconstruction: {error}; options are {known}") from None
    opts.check()
    requested_resample = opts.resample
    requested_precision = opts.precision
    out = Path(out_dir)
    check_report_dir(out, opts.overwrite, "reconstruction report")
    start = time.perf_counter()
    timings: dict[str, float] = {}
    sources = resolve_test_sources(test)
    opts.resample, resample_from = resolve_resample(opts.resample, sources)
    task = infer_task(sources, opts.task)
    opts.task = task.name
    loaded = load_models(models)
    check_model_resample(loaded, opts.resample)
    timings["load_models"] = time.perf_counter() - start

    import keras  # lazy: python -m caloml.evaluate parses its arguments without TensorFlow

    keras.utils.set_random_seed(opts.seed)
    opts.precision = networks_in_precision(loaded, opts.precision)
    t0 = time.perf_counter()
    predictions, info = _predict_all(loaded, sources, task, opts)
    timings["predict"] = time.perf_counter() - t0
    check_model_splits(  # no model scored on events its own run trained or validated on
        loaded, sources, *(predictions[key] for key in ("file_index", "row", "pdgID", "raw_fraction"))
    )
    labels = predictions["class_label"]
    n_per_class = [int(np.sum(labels == k)) for k in range(len(task.classes))]
    missing = [task.classes[k] for k, count in enumerate(n_per_class) if count == 0]
    if missing:
        raise CalomlError(
            f"task {task.name}: no test event of class pdgID {missing[0]} ({PDG_PARTICLE[missing[0]]})"
            " after the filters"
        )
    for model in loaded:
        if model.regressor:
            values = predictions[f"energy/{model.name}"]
            if model.particles is None and not np.all(np.isfinite(values)):
                raise CalomlError(f"{model.path}: predicts non-finite energies")

    t0 = time.perf_counter()
    classification, curves = _classification(loaded, predictions, opts)
    regression, selection, linear = _regression(loaded, predictions, task, opts)
    comparison = comparison_table(loaded, classification, regression, task, int(labels.size), linear, selection)
    timings["metrics"] = time.perf_counter() - t0

    arguments = {
        "test": [str(p) for p in test],
        "model": [str(p) for p in models],
        "out": str(out),
        **dataclasses.asdict(opts),
        "resample_requested": requested_resample,
        "resample_from": resample_from,
        "precision_requested": requested_precision,
    }
    record: dict[str, Any] = {
        **report_header("reco", opts),
        "task": {"name": task.name, "classes": list(task.classes), "particles": list(task.particles)},
        "test": {
            "sources": [s.describe(n) for s, n in zip(sources, info["rows_read"], strict=True)],
            "rows_after_filters": info["rows_after_filters"],
            "n_events": int(labels.size),
            "n_per_class": n_per_class,
            "eta_key": info["eta_key"],
            "resample": opts.resample,
            "resample_from": resample_from,
        },
        "models": [m.describe() for m in loaded],
        "classification": classification,
        "regression": regression,
        "regression_selection": selection,
        "reference_resolution": {"name": "LCD ECAL", **LCD_ECAL_REFERENCE},
        "comparison": comparison,
    }
    record = json_plain(record)

    with report_dir(out, opts.overwrite, "reconstruction report") as tmp:
        t0 = time.perf_counter()
        record["plots"] = _draw(tmp, record, curves, loaded) if opts.plots else []
        timings["plots"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - start
        record["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
        arrays = {k: v for k, v in predictions.items() if k != "raw_fraction"}
        np.savez_compressed(tmp / "predictions.npz", **arrays)  # type: ignore[arg-type]
        (tmp / "arguments.json").write_text(json.dumps(json_plain(arguments), indent=1) + "\n", encoding="utf-8")
        (tmp / "comparison.md").write_text(comparison_markdown(record), encoding="utf-8")
        (tmp / "metrics.json").write_text(json.dumps(record, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    if opts.progress:
        print(f"reconstruction evaluation written to {out} ({timings['total']:.0f} s)", file=sys.stderr)
    return record


# -- command line -----------------------------------------------------------------------------------------------------
def add_reco_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``reco``: reconstruction models against the baselines on the same test events."""
    parser = subparsers.add_parser(
        "reco",
        help="compare Triforce networks and baselines (classification and energy regression) on the same test events",
        description=(
            "Evaluate Triforce networks (.keras files or run directories) and baselines (BDT, linear and XGBoost"
            " regressions) on the same test events (LCD reconstruction files or TFRecord directories, or run"
            " directories with test_events.json): ROC and AUC, accuracy vs energy and eta, relative bias and"
            " resolution per particle in energy bins with the fit sigma/E = sqrt(a^2/E + b^2 + (c/E)^2), and one"
            " comparison table. Writes metrics.json, comparison.md, arguments.json, predictions.npz and PNG plots"
            " into --out."
        ),
    )
    parser.add_argument("--test", required=True, nargs="+", type=Path, metavar="FILE_OR_RUN_DIR", help="test events")
    parser.add_argument("--model", required=True, nargs="+", type=Path, metavar="PATH", help="models to compare")
    parser.add_argument("--out", required=True, type=output_directory, metavar="DIR", help="report directory")
    parser.add_argument("--task", choices=sorted(TASKS), help="the task (default: from the test events)")
    parser.add_argument(
        "--seed", type=non_negative_seed, default=1, help="seed of Keras' random state, recorded (default 1)"
    )
    parser.add_argument(
        "--energy-bin-width", type=positive_float, default=25.0, metavar="GEV", help="true-energy bins (25 GeV)"
    )
    parser.add_argument(
        "--energy-range",
        type=positive_float,
        nargs=2,
        default=(10.0, 510.0),
        metavar=("LOW", "HIGH"),
        help="true-energy range of the bins, GeV (10 510)",
    )
    parser.add_argument("--eta-bins", type=positive_int, default=10, help="bins of eta (10)")
    parser.add_argument("--min-bin-events", type=positive_int, default=5, help="fewest events of a resolution bin (5)")
    parser.add_argument(
        "--chunk-events", type=positive_int, default=128, help="events read and predicted at once (128)"
    )
    parser.add_argument(
        "--resample",
        choices=RESAMPLE_CHOICES,
        default=None,
        help="evaluate on the ECAL resampled to an ATLAS- or CMS-like granularity (default: what the --test runs"
        " recorded, none for plain files); refused when it contradicts a test or model run's record",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="arithmetic of the Triforce networks: bfloat16 = Keras mixed_bfloat16 on the same float32 weights"
        " (float32 on a machine without bfloat16 units, with a note); the baselines are unaffected (default float32)",
    )
    parser.add_argument("--no-plots", action="store_true", help="metrics only, no PNG figures")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--no-progress", action="store_true", help="print nothing but the summary")
    return parser


def run_reco(args: argparse.Namespace) -> int:
    """Run the reconstruction evaluation and print the comparison table."""
    import_tensorflow_quietly()  # TensorFlow's start-up log lines would bury the comparison table
    record = evaluate_reconstruction(
        args.test,
        args.model,
        args.out,
        task=args.task,
        seed=args.seed,
        energy_bin_width_gev=args.energy_bin_width,
        energy_low_gev=args.energy_range[0],
        energy_high_gev=args.energy_range[1],
        eta_bins=args.eta_bins,
        min_bin_events=args.min_bin_events,
        chunk_events=args.chunk_events,
        resample=args.resample,
        precision=args.precision,
        plots=not args.no_plots,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(comparison_markdown(record), end="")
    return 0
