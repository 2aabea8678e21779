"""The generator validation suite: generated showers against a reference file of the same layout.

:func:`evaluate_generated` runs every stage and writes the report directory (:mod:`caloml.evaluate.report`):

1. open and check both files (:mod:`caloml.evaluate.inputs`): same layout and geometry, events, compatible
   incident energies; the classifier test refuses files of fewer than 500 showers before any long work;
2. stream each file once (:mod:`caloml.evaluate.features`): per-event observables, the cell spectrum and the
   low-level classifier input of at most ``classifier_events`` seeded-random showers per file;
3. compare (:mod:`caloml.evaluate.comparison`): histograms, separation power, KS with Holm-flagging, relative
   errors of the means in bins of energy (and angle), correlation matrices;
4. the classifier two-sample test on low-level and high-level inputs (:mod:`caloml.evaluate.two_sample`);
5. GAN-train / GAN-test when a reconstruction classifier and a background file are available
   (:mod:`caloml.evaluate.gan_train_test`);
6. plots, ``metrics.json`` and ``report.html``, installed atomically.

Memory: one chunk of cells per file at a time, the per-event features (about 1 kB per shower for LCD, 3 kB
for CaloChallenge dataset 2) and the classifier's low-level inputs, 4 bytes x (7,226 for LCD, 6,481 for dataset 2)
per shower for at most ``classifier_events`` showers per file (20,000 by default: 0.58 GB for LCD files).
See ``docs/evaluation.md``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from caloml.data.hdf5 import open_reader
from caloml.errors import CalomlError
from caloml.evaluate import plots
from caloml.evaluate.comparison import (
    BinnedMeans,
    Binning,
    ColumnComparison,
    angle_edges,
    compare_features,
    correlation_matrices,
    energy_edges,
    separation_power_noise_floor,
)
from caloml.evaluate.crystal import evaluate_crystal, is_crystal_file
from caloml.evaluate.features import SPECTRUM_EDGES_GEV, ShowerFeatures, extract_features, high_level_input
from caloml.evaluate.gan_train_test import TrainClassifier, gan_train_test
from caloml.evaluate.hit_patterns import compare_hit_patterns, draw_hit_pattern_plots
from caloml.evaluate.inputs import InputPair, open_pair
from caloml.evaluate.report import report_header, write_outputs
from caloml.evaluate.two_sample import ClassifierSettings, check_classifier_sizes, classifier_two_sample_test
from caloml.json_values import json_plain
from caloml.observables.metrics import separation_power
from caloml.quiet import import_tensorflow_quietly
from caloml.report_directory import check_report_dir, report_dir

__all__ = [
    "DEFAULT_ENERGY_BINNING",
    "EvaluationOptions",
    "condition_binning",
    "evaluate_generated",
    "run_classifiers",
    "summarize",
]

#: Default incident-energy binning per layout: 5 GeV-wide bins (3DGAN paper) for LCD, 12 logarithmic bins
#: (4 per decade over the 1 GeV - 1 TeV of datasets 2 and 3) for CaloChallenge.
DEFAULT_ENERGY_BINNING: dict[str, dict[str, Any]] = {
    "lcd": {"energy_bin_width_gev": 5.0},
    "calochallenge": {"log_energy_bins": 12},
}

#: What the report directory is, in error messages.
_WHAT = "evaluation report"

#: Observables whose relative error is not meaningful (their reference mean is about 0).
_NO_RELATIVE_ERROR = frozenset({"centre_x_mm", "centre_y_mm"})


@dataclass(frozen=True)
class EvaluationOptions:
    """Options of :func:`evaluate_generated` (all recorded in ``metrics.json``).

    Attributes:
        seed: seed of every random draw (classifier subsets, splits and initializations; GAN-train halves).
        repeats: classifier tests per input kind, seeds ``seed, seed + 1, ...`` (mean and spread reported).
        classifier: run the classifier two-sample test (needs at least 500 showers per file).
        classifier_events: most showers per file in the classifier test (a seeded-random subset beyond).
        bins: histogram bins per observable.
        energy_bin_width_gev: linear incident-energy bins of this width (GeV); default 5 for LCD files.
        log_energy_bins: that many logarithmic incident-energy bins instead; default 12 for CaloChallenge.
        angle_bin_width_rad: angle bins (LCD files with theta, or mtheta), radians.
        min_bin_events: showers needed in a condition bin, in each file, for its relative error to be defined.
        alpha: family-wise level of the Holm-Bonferroni flags over all observable columns.
        chunk_events: showers read at a time.
        background: a file of the other class for GAN-train / GAN-test (LCD), or None.
        overwrite: replace a non-empty output directory.
        progress: show progress bars.
        layer_panels: per-layer observables of CaloChallenge files get a grid of at most this many layer
            histograms each (evenly spread over the layers); 0 for none.
    """

    seed: int = 1
    repeats: int = 1
    classifier: bool = True
    classifier_events: int = 20000
    bins: int = 40
    energy_bin_width_gev: float | None = None
    log_energy_bins: int | None = None
    angle_bin_width_rad: float = 0.1
    min_bin_events: int = 10
    alpha: float = 0.01
    chunk_events: int = 64
    background: str | None = None
    overwrite: bool = False
    progress: bool = True
    layer_panels: int = 15

    def check(self) -> None:
        """Raise CalomlError on an invalid value."""
        if self.repeats < 1:
            raise CalomlError(f"repeats must be at least 1, got {self.repeats}")
        if self.classifier_events < 1:
            raise CalomlError(f"classifier_events must be positive, got {self.classifier_events}")
        if self.bins < 2:
            raise CalomlError(f"bins must be at least 2, got {self.bins}")
        if self.chunk_events < 1:
            raise CalomlError(f"chunk_events must be positive, got {self.chunk_events}")
        if not 0 < self.alpha < 1:
            raise CalomlError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.energy_bin_width_gev is not None and self.log_energy_bins is not None:
            raise CalomlError("give either an energy bin width or a number of logarithmic energy bins, not both")
        if self.energy_bin_width_gev is not None and not self.energy_bin_width_gev > 0:
            raise CalomlError(f"the energy bin width must be positive, got {self.energy_bin_width_gev} GeV")
        if self.log_energy_bins is not None and self.log_energy_bins < 1:
            raise CalomlError(f"the number of energy bins must be positive, got {self.log_energy_bins}")
        if not self.angle_bin_width_rad > 0:
            raise CalomlError(f"the angle bin width must be positive, got {self.angle_bin_width_rad} rad")

    def resolved(self, layout: str) -> EvaluationOptions:
        """A checked copy with the layout's default energy binning filled in (CalomlError on an invalid value)."""
        self.check()
        changes: dict[str, Any] = {}
        if self.energy_bin_width_gev is None and self.log_energy_bins is None:
            changes = {**DEFAULT_ENERGY_BINNING[layout]}
        return dataclasses.replace(self, **changes)


def _columns_json(
    spec_name: str,
    columns: list[ColumnComparison],
    flags: list[bool],
    scalar: bool,
) -> list[dict]:
    out = []
    for column, flagged in zip(columns, flags, strict=True):

        def binned(values: BinnedMeans | None) -> dict | None:
            if values is None:
                return None
            summary = values.summary()
            if spec_name in _NO_RELATIVE_ERROR:
                summary["max_abs_relative_error"] = summary["mean_abs_relative_error"] = None
            return {
                "relative_error": values.relative_error,
                "relative_error_uncertainty": values.relative_error_uncertainty,
                "pull": values.pull,
                **summary,
            }

        entry: dict[str, Any] = {
            "separation_power": column.separation_power,
            "separation_power_noise_floor": column.noise_floor,
            "ks_statistic": column.ks_statistic,
            "ks_pvalue": column.ks_pvalue,
            "flagged": flagged,
            "mean_generated": column.mean_gen,
            "mean_reference": column.mean_ref,
            "relative_mean_error": None if spec_name in _NO_RELATIVE_ERROR else column.relative_mean_error,
            "energy_bins": binned(column.energy_bins),
            "angle_bins": binned(column.angle_bins),
        }
        if scalar:
            entry["histogram"] = {
                "edges": column.edges,
                "generated": column.counts_gen,
                "reference": column.counts_ref,
            }
        out.append(entry)
    return out


def summarize(record: dict) -> dict:
    """The numbers of the report's first table, from the other keys of a results record.

    ``consistent_with_reference`` is True when no observable column is flagged and no classifier AUC exceeds
    0.5 by more than three statistical errors (nor, with repeats, three times their spread).
    """
    observables = record["observables"]
    columns = [(name, k, column) for name, obs in observables.items() for k, column in enumerate(obs["columns"])]
    flagged = [name for name, obs in observables.items() if any(c["flagged"] for c in obs["columns"])]
    scalar_powers = [
        obs["columns"][0]["separation_power"]
        for obs in observables.values()
        if obs["components"] is None and obs["columns"][0]["separation_power"] is not None
    ]
    ranked = sorted(
        (c for c in columns if c[2]["separation_power"] is not None),
        key=lambda c: -c[2]["separation_power"],
    )
    largest = [
        {
            "observable": name,
            "column": k,
            "separation_power": c["separation_power"],
            "noise_floor": c["separation_power_noise_floor"],
        }
        for name, k, c in ranked[:5]
    ]
    if largest:
        top = largest[0]
        where = f" [{top['column']}]" if observables[top["observable"]]["components"] else ""
        largest_text = (
            f"{top['observable']}{where}: {top['separation_power']:.3g} (noise floor {top['noise_floor']:.2g})"
        )
    else:
        largest_text = "n/a"
    classifier = record["classifier"]
    significant = any(classifier.get(kind, {}).get("significant") for kind in ("low_level", "high_level"))
    gan = record["gan_train_test"]
    if gan.get("available"):
        gan_text = f"baseline {gan['baseline']:.4f}, GAN-train {gan['gan_train']:.4f}, GAN-test {gan['gan_test']:.4f}"
    else:
        gan_text = f"not run: {gan.get('reason', '')}"
    return {
        "n_generated": record["files"]["generated"]["n_events"],
        "n_reference": record["files"]["reference"]["n_events"],
        "n_columns": len(columns),
        "n_flagged_columns": sum(1 for _, _, c in columns if c["flagged"]),
        "flagged_observables": flagged,
        "median_separation_power": float(np.median(scalar_powers)) if scalar_powers else None,
        "largest_separation_power": largest,
        "largest_separation_power_text": largest_text,
        "auc_low_level": classifier.get("low_level", {}).get("auc"),
        "auc_high_level": classifier.get("high_level", {}).get("auc"),
        "jsd_low_level": classifier.get("low_level", {}).get("jsd_nats"),
        "jsd_high_level": classifier.get("high_level", {}).get("jsd_nats"),
        "correlation_max_abs_difference": record["correlations"]["max_abs_difference"],
        "gan_train_test_available": bool(gan.get("available")),
        "gan_train_test_text": gan_text,
        "consistent_with_reference": not flagged and not significant,
    }


def _ks(gen: np.ndarray, ref: np.ndarray) -> dict:
    test = stats.ks_2samp(np.asarray(gen, dtype=np.float64), np.asarray(ref, dtype=np.float64))
    return {
        "ks_statistic": float(test.statistic),
        "ks_pvalue": float(test.pvalue),
        "mean_generated": float(np.mean(gen)),
        "mean_reference": float(np.mean(ref)),
    }


def _classifier_inputs(features: ShowerFeatures, use_theta: bool) -> tuple[np.ndarray, np.ndarray]:
    """(low-level, high-level) classifier inputs of the classifier subset of one file (the low-level one is the
    features' own array, not a copy)."""
    assert features.low_level is not None
    assert features.low_level_indices is not None
    return features.low_level, high_level_input(features, use_theta=use_theta)[features.low_level_indices]


def run_classifiers(
    gen: ShowerFeatures, ref: ShowerFeatures, angle_key: str | None, options: EvaluationOptions
) -> dict:
    import_tensorflow_quietly()  # TensorFlow's start-up log lines would bury the command's own output
    use_theta = angle_key is not None
    inputs = {"generated": _classifier_inputs(gen, use_theta), "reference": _classifier_inputs(ref, use_theta)}
    gen.low_level = ref.low_level = None  # the classifier holds the only references now
    condition_text = "log10 E_inc" + (f", {angle_key}" if use_theta else "")
    pooling = "3 x 3 sum-pooled cells in x, y" if gen.layout == "lcd" else "voxels (15.15 keV threshold applied)"
    descriptions = {
        "low_level": f"{pooling} / E_inc, {condition_text}",
        "high_level": f"every observable column (energies as log10 E / E_inc), {condition_text}",
    }
    settings = ClassifierSettings()
    result: dict[str, Any] = {"available": True, "seeds": [options.seed + r for r in range(options.repeats)]}
    for index, kind in enumerate(("low_level", "high_level")):
        x_gen, x_ref = inputs["generated"][index], inputs["reference"][index]
        test = classifier_two_sample_test(x_gen, x_ref, seed=options.seed, repeats=options.repeats, settings=settings)
        test["input"] = descriptions[kind]
        bound = 3.0 * max(test["auc_stat_error"], test["auc_std"] or 0.0)
        test["significant"] = bool(test["auc"] - 0.5 > bound)
        result[kind] = test
        if kind == "low_level":  # free the large low-level inputs before the next test
            inputs = {role: (np.zeros((0, 0), np.float32), pair[1]) for role, pair in inputs.items()}
            del x_gen, x_ref
    return result


def _draw_plots(
    folder: Path,
    gen: ShowerFeatures,
    ref: ShowerFeatures,
    comparisons: dict[str, list[ColumnComparison]],
    flags: dict[str, list[bool]],
    record: dict,
    options: EvaluationOptions,
    binning: Binning,
) -> list[str]:
    names: list[str] = [plots.plot_conditions(folder, gen.energy_gev, ref.energy_gev, gen.theta_rad, ref.theta_rad)]
    scalars = [n for n, spec in ref.specs.items() if spec.components is None]
    for name in scalars:
        spec = ref.specs[name]
        names.append(plots.plot_histogram(folder, name, spec.label, comparisons[name][0], spec.log, flags[name][0]))
    for name, spec in ref.specs.items():
        if spec.components is None:
            continue
        means = None
        label = spec.label
        if spec.unit == "GeV":  # per incident GeV: the mean profiles then do not move with the sampled energies
            means = (
                np.mean(gen.observables[name] / gen.energy_gev[:, None], axis=0),
                np.mean(ref.observables[name] / ref.energy_gev[:, None], axis=0),
            )
            label = spec.label.replace(" [GeV]", " / E_inc")
        names.append(
            plots.plot_profile(
                folder, name, label, spec.components, comparisons[name], spec.log, means, name not in _NO_RELATIVE_ERROR
            )
        )
        if spec.components == "layer" and gen.layout == "calochallenge" and options.layer_panels > 0:
            n_layers = len(comparisons[name])
            count = min(options.layer_panels, n_layers)
            layers = sorted({round(float(x)) for x in np.linspace(0, n_layers - 1, count)})
            names.append(plots.plot_layer_grid(folder, name, spec.label, comparisons[name], spec.log, layers))
    energy_binned = {n: comparisons[n][0].energy_bins for n in scalars}
    log_energy = options.log_energy_bins is not None
    names.append(
        plots.plot_binned_means(
            folder, "energy_bins.png", "incident energy [GeV]", binning.energy_edges_gev, energy_binned, log_energy
        )
    )
    if binning.angle_edges_rad is not None:
        angle_binned = {n: b for n in scalars if (b := comparisons[n][0].angle_bins) is not None}
        if angle_binned:
            names.append(
                plots.plot_binned_means(folder, "angle_bins.png", "theta [rad]", binning.angle_edges_rad, angle_binned)
            )
    what = "cell" if gen.layout == "lcd" else "voxel"
    names.append(plots.plot_spectrum(folder, SPECTRUM_EDGES_GEV, gen.spectrum_counts, ref.spectrum_counts, what))
    names.append(plots.plot_correlations(folder, record["correlations"]))
    if record["classifier"].get("available"):
        names.append(plots.plot_roc(folder, record["classifier"]))
    return names


def _low_level_subset(n_events: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    if n_events <= cap:
        return np.arange(n_events)
    return np.sort(rng.choice(n_events, cap, replace=False))


def _open_background(path: str, pair: InputPair, chunk_events: int) -> tuple[Path, int, dict]:
    with open_reader(path, chunk_events=chunk_events) as reader:
        if reader.layout != pair.layout:
            raise CalomlError(
                f"{path}: the background file is a {reader.layout} file but the evaluated files are {pair.layout}"
            )
        if reader.n_events < 2:
            raise CalomlError(f"{path}: the background file needs at least 2 showers, it has {reader.n_events}")
        shape = tuple(reader.event_shapes["ECAL" if reader.layout == "lcd" else "showers"])
        if shape != pair.reference.event_shape:
            raise CalomlError(
                f"{path}: background showers of shape {shape}, the evaluated files have {pair.reference.event_shape}"
            )
        return Path(path), int(reader.n_events), {"path": str(path), "n_events": int(reader.n_events)}


def condition_binning(features_gen: Any, features_ref: Any, options: EvaluationOptions, *, use_theta: bool) -> Binning:
    """The incident-energy bins (GeV) and, with ``use_theta``, the angle bins (rad) over both samples' conditions,
    as ``options`` asks (resolved for the layout); the binning of every per-bin comparison."""
    energy = energy_edges(
        features_gen.energy_gev,
        features_ref.energy_gev,
        width_gev=options.energy_bin_width_gev,
        log_bins=options.log_energy_bins,
    )
    angles = None
    if use_theta:
        assert features_gen.theta_rad is not None
        assert features_ref.theta_rad is not None
        angles = angle_edges(features_gen.theta_rad, features_ref.theta_rad, options.angle_bin_width_rad)
    return Binning(energy, angles)


def evaluate_generated(
    generated: str | Path,
    reference: str | Path,
    out_dir: str | Path,
    *,
    trainer: TrainClassifier | None = None,
    **options: Any,
) -> dict:
    """Evaluate a file of generated showers against a reference file of the same layout; write the report.

    Args:
        generated: HDF5 file of generated showers (LCD or CaloChallenge layout).
        reference: HDF5 file of reference (simulated) showers, same layout and geometry.
        out_dir: the report directory (``report.html``, ``metrics.json``, PNG plots); must not exist or be empty
            unless ``overwrite=True``.
        trainer: the GAN-train / GAN-test classifier's training function (default:
            ``caloml.evaluate.gan_train_test.train_classifier``, looked up by
            :func:`caloml.evaluate.gan_train_test.find_trainer` in its ``TRAINER_MODULE``).
        **options: the fields of :class:`EvaluationOptions` (``seed``, ``repeats``, ``classifier``, ...).

    Returns:
        The content of ``metrics.json`` (see :mod:`caloml.evaluate.report` for its keys).

    Raises:
        CalomlError: bad input (see :mod:`caloml.evaluate.inputs`), too few showers for the classifier test, an
            existing output without ``overwrite``; one line each.
    """
    if is_crystal_file(generated) or is_crystal_file(reference):  # crystal arrays: per energy point
        return evaluate_crystal(generated, reference, out_dir, **options)
    try:
        base = EvaluationOptions(**options)
    except TypeError as error:
        known = ", ".join(f.name for f in dataclasses.fields(EvaluationOptions))
        raise CalomlError(f"evaluate_generated: {error}; options are {known}") from None
    base.check()  # before any file is opened
    out = Path(out_dir)
    check_report_dir(out, base.overwrite, _WHAT)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    with open_pair(generated, reference, chunk_events=base.chunk_events) as pair:
        opts = base.resolved(pair.layout)
        if opts.classifier:
            check_classifier_sizes(
                pair.generated.n_events,
                pair.reference.n_events,
                generated=str(pair.generated.path),
                reference=str(pair.reference.path),
            )
        background = None
        background_info = None
        if opts.background is not None:
            background = _open_background(opts.background, pair, opts.chunk_events)
            background_info = background[2]
        rng = np.random.default_rng(opts.seed)
        subsets = {
            role: _low_level_subset(source.n_events, opts.classifier_events, rng) if opts.classifier else None
            for role, source in (("generated", pair.generated), ("reference", pair.reference))
        }
        total = pair.generated.n_events + pair.reference.n_events
        with tqdm(total=total, desc="features", unit="shower", disable=None if opts.progress else True) as bar:
            features_gen, features_ref = (
                extract_features(
                    source,
                    low_level_indices=subsets[role],
                    low_level_theta=pair.has_theta,
                    progress=bar.update,
                )
                for role, source in (("generated", pair.generated), ("reference", pair.reference))
            )
        files = {"generated": pair.generated.describe(), "reference": pair.reference.describe()}
        use_theta = pair.has_theta
        angle_key = pair.angle_key
        layout, geometry_name = pair.layout, pair.geometry_name
    timings["features"] = time.perf_counter() - start

    t0 = time.perf_counter()
    binning = condition_binning(features_gen, features_ref, opts, use_theta=use_theta)
    energy, angles = binning.energy_edges_gev, binning.angle_edges_rad
    comparisons, flags = compare_features(
        features_gen, features_ref, binning, n_bins=opts.bins, min_bin_events=opts.min_bin_events, alpha=opts.alpha
    )
    conditions = {"energy_gev": _ks(features_gen.energy_gev, features_ref.energy_gev)}
    if use_theta:
        conditions[f"{angle_key}_rad"] = _ks(features_gen.theta_rad, features_ref.theta_rad)  # type: ignore[arg-type]
    observables = {}
    for name, spec in features_ref.specs.items():
        observables[name] = {
            "label": spec.label,
            "unit": spec.unit,
            "components": spec.components,
            "relative_error": name not in _NO_RELATIVE_ERROR,
            "columns": _columns_json(name, comparisons[name], flags[name], spec.components is None),
        }
    counts = {}
    for label, edges, values_gen, values_ref in (
        ("energy", energy, features_gen.energy_gev, features_ref.energy_gev),
        ("angle", angles, features_gen.theta_rad, features_ref.theta_rad),
    ):
        if edges is not None and values_gen is not None and values_ref is not None:
            counts[f"{label}_counts_generated"] = np.histogram(values_gen, edges)[0]
            counts[f"{label}_counts_reference"] = np.histogram(values_ref, edges)[0]
    spectrum = {
        "edges_gev": SPECTRUM_EDGES_GEV,
        "generated": features_gen.spectrum_counts,
        "reference": features_ref.spectrum_counts,
        "separation_power": separation_power(features_gen.spectrum_counts, features_ref.spectrum_counts),
        # cells of one shower are correlated: the floor of independent cells is a lower bound of the noise
        "separation_power_noise_floor_independent_cells": separation_power_noise_floor(
            features_gen.spectrum_counts, features_ref.spectrum_counts
        ),
    }
    correlations = correlation_matrices(features_gen, features_ref)
    hit_patterns, hit_sums = compare_hit_patterns(generated, reference, chunk_events=opts.chunk_events)
    timings["comparison"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if opts.classifier:
        classifier = run_classifiers(features_gen, features_ref, angle_key, opts)
    else:
        classifier = {"available": False, "reason": "switched off (--no-classifier)"}
    timings["classifier"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gan = gan_train_test(
        Path(generated),
        Path(reference),
        background[0] if background else None,
        n_generated=features_gen.n_events,
        n_reference=features_ref.n_events,
        n_background=background[1] if background else 0,
        layout=layout,
        seed=opts.seed,
        trainer=trainer,
    )
    timings["gan_train_test"] = time.perf_counter() - t0

    files["background"] = background_info  # type: ignore[assignment]
    record: dict[str, Any] = {
        **report_header("gen", opts),
        "layout": layout,
        "geometry": geometry_name,
        "files": files,
        "conditions": conditions,
        "binning": {
            "energy_edges_gev": energy,
            "angle_edges_rad": angles,
            "angle_key": angle_key,
            "histogram_bins": opts.bins,
            "spectrum_edges_gev": SPECTRUM_EDGES_GEV,
            **counts,
        },
        "observables": observables,
        "spectrum": spectrum,
        "correlations": correlations,
        "classifier": classifier,
        "gan_train_test": gan,
        "hit_patterns": hit_patterns,
    }
    record = json_plain(record)
    record["summary"] = summarize(record)

    with report_dir(out, opts.overwrite, _WHAT) as tmp:
        t0 = time.perf_counter()
        record["plots"] = _draw_plots(tmp, features_gen, features_ref, comparisons, flags, record, opts, binning)
        if hit_sums is not None:
            record["plots"] += draw_hit_pattern_plots(tmp, record["hit_patterns"], hit_sums)
        timings["plots"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - start
        record["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
        record = write_outputs(tmp, record)
    if opts.progress:
        print(f"evaluation written to {out} ({timings['total']:.0f} s)", file=sys.stderr)
    return record
