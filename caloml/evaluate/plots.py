"""The evaluation's figures (PNG), drawn on matplotlib's object API (no pyplot: no backend or global state changed).

Every function draws one figure into ``folder`` and returns the file name. Generated showers are drawn in red,
the reference in black; ratio panels show generated / reference with the statistical error of both samples.
See ``docs/evaluation.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from caloml.evaluate.comparison import BinnedMeans, ColumnComparison

__all__ = [
    "plot_binned_means",
    "plot_conditions",
    "plot_correlations",
    "plot_histogram",
    "plot_layer_grid",
    "plot_profile",
    "plot_roc",
    "plot_spectrum",
]

GENERATED = "tab:red"
REFERENCE = "black"
_DPI = 90


def _save(fig: Figure, folder: Path, name: str) -> str:
    fig.savefig(folder / name, dpi=_DPI)
    return name


def _ratio(num: np.ndarray, den: np.ndarray, n_num: float, n_den: float) -> tuple[np.ndarray, np.ndarray]:
    """Ratio of unit-normalized counts and its Poisson error; NaN where the reference bin is empty."""
    ratio = np.full(num.shape, np.nan)
    error = np.full(num.shape, np.nan)
    ok = den > 0
    p_num = num / max(n_num, 1.0)
    p_den = den / max(n_den, 1.0)
    ratio[ok] = p_num[ok] / p_den[ok]
    rel = np.sqrt(1.0 / np.maximum(num[ok], 1.0) + 1.0 / den[ok])
    error[ok] = ratio[ok] * rel
    return ratio, error


def _hist_panels(
    top: Any, bottom: Any, comparison: ColumnComparison, log_x: bool, xlabel: str, log_y: bool = False
) -> None:
    edges = comparison.edges
    n_gen, n_ref = comparison.counts_gen.sum(), comparison.counts_ref.sum()
    widths = np.diff(edges)
    for counts, n, colour, label in (
        (comparison.counts_ref, n_ref, REFERENCE, "reference"),
        (comparison.counts_gen, n_gen, GENERATED, "generated"),
    ):
        density = counts / max(n, 1.0) / widths
        top.stairs(density, edges, color=colour, label=label, linewidth=1.3)
    ratio, error = _ratio(comparison.counts_gen, comparison.counts_ref, n_gen, n_ref)
    centres = np.sqrt(edges[1:] * edges[:-1]) if log_x else 0.5 * (edges[1:] + edges[:-1])
    bottom.errorbar(centres, ratio, yerr=error, fmt="o", ms=2.5, color=GENERATED, elinewidth=0.8)
    bottom.axhline(1.0, color=REFERENCE, linewidth=0.8)
    bottom.set_ylim(0.5, 1.5)
    bottom.set_ylabel("gen / ref")
    bottom.set_xlabel(xlabel)
    top.set_ylabel("normalized")
    if log_x:
        top.set_xscale("log")
        bottom.set_xscale("log")
    if log_y:
        top.set_yscale("log")
    top.tick_params(labelbottom=False)


def plot_histogram(folder: Path, name: str, label: str, comparison: ColumnComparison, log: bool, flagged: bool) -> str:
    """Histogram of one scalar observable with its ratio panel and metrics in the title; ``hist_<name>.png``."""
    fig = Figure(figsize=(5.4, 4.6))  # fixed margins: half the drawing time of a constrained layout
    fig.subplots_adjust(left=0.14, right=0.97, top=0.88, bottom=0.11, hspace=0.06)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    _hist_panels(top, bottom, comparison, log, label)
    mark = " (flagged)" if flagged else ""
    top.set_title(
        f"{name}{mark}\nsep. power {comparison.separation_power:.3g} (noise {comparison.noise_floor:.2g}),"
        f" KS {comparison.ks_statistic:.3g}",
        fontsize=9,
    )
    top.legend(fontsize=8)
    top.text(0.99, 0.02, "end bins hold the overflow", transform=top.transAxes, ha="right", fontsize=6, alpha=0.6)
    return _save(fig, folder, f"hist_{name}.png")


def plot_profile(
    folder: Path,
    name: str,
    label: str,
    component: str,
    columns: Sequence[ColumnComparison],
    log_y: bool,
    means: tuple[np.ndarray, np.ndarray] | None = None,
    ratio: bool = True,
) -> str:
    """Mean of a per-layer / per-position observable, its ratio and the separation power per column.

    ``means`` (generated, reference), each (K,), replaces the plain column means in the top panels (for example
    the means of the profiles divided by the incident energy, which do not move with the sampled energies);
    ``label`` then describes them. ``ratio=False`` draws the difference generated - reference instead of the
    ratio (for observables whose mean is about 0, such as the centres of energy of cylindrical showers).
    """
    fig = Figure(figsize=(6.0, 6.0))
    fig.subplots_adjust(left=0.14, right=0.97, top=0.94, bottom=0.09, hspace=0.08)
    top, middle, bottom = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1, 1.4]})
    index = np.arange(len(columns))
    if means is None:
        mean_gen = np.array([c.mean_gen for c in columns])
        mean_ref = np.array([c.mean_ref for c in columns])
    else:
        mean_gen, mean_ref = (np.asarray(m, dtype=np.float64) for m in means)
    top.plot(index, mean_ref, drawstyle="steps-mid", color=REFERENCE, label="reference")
    top.plot(index, mean_gen, drawstyle="steps-mid", color=GENERATED, label="generated")
    top.set_ylabel(f"mean {label}", fontsize=8)
    if log_y and np.any(mean_ref > 0):
        top.set_yscale("log")
    top.legend(fontsize=8)
    if ratio:
        with np.errstate(divide="ignore", invalid="ignore"):
            middle.plot(index, np.where(mean_ref != 0, mean_gen / mean_ref, np.nan), "o", ms=2.5, color=GENERATED)
        middle.axhline(1.0, color=REFERENCE, linewidth=0.8)
        middle.set_ylim(0.8, 1.2)
        middle.set_ylabel("gen / ref")
    else:
        middle.plot(index, mean_gen - mean_ref, "o", ms=2.5, color=GENERATED)
        middle.axhline(0.0, color=REFERENCE, linewidth=0.8)
        middle.set_ylabel("gen - ref")
    power = np.array([c.separation_power for c in columns])
    floor = np.array([c.noise_floor for c in columns])
    bottom.bar(index, power, color=GENERATED, width=0.8, label="separation power")
    bottom.plot(index, floor, color=REFERENCE, linewidth=0.8, label="noise floor")
    bottom.set_ylabel("sep. power")
    bottom.set_xlabel(component)
    bottom.legend(fontsize=7)
    top.set_title(f"{name}: largest separation power {np.nanmax(power):.3g}", fontsize=9)
    return _save(fig, folder, f"profile_{name}.png")


def plot_layer_grid(
    folder: Path, name: str, label: str, columns: Sequence[ColumnComparison], log: bool, layers: Sequence[int]
) -> str:
    """Histograms of a per-layer observable for the given layers, one small panel each; ``layers_<name>.png``."""
    n = len(layers)
    ncols = min(5, n)
    nrows = -(-n // ncols)
    height = 1.9 * nrows + 0.4
    fig = Figure(figsize=(2.3 * ncols, height))  # fixed margins: a constrained layout of many panels is slow
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.08, top=1 - 0.45 / height, wspace=0.12, hspace=0.55)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, layer in zip(axes, layers, strict=False):
        comparison = columns[layer]
        widths = np.diff(comparison.edges)
        for counts, colour in ((comparison.counts_ref, REFERENCE), (comparison.counts_gen, GENERATED)):
            ax.stairs(counts / max(counts.sum(), 1.0) / widths, comparison.edges, color=colour, linewidth=1.0)
        if log:
            ax.set_xscale("log")
        ax.set_title(f"layer {layer}: SP {comparison.separation_power:.2g}", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{label} (red generated, black reference)", fontsize=9)
    return _save(fig, folder, f"layers_{name}.png")


def plot_binned_means(
    folder: Path,
    file_name: str,
    variable: str,
    edges: np.ndarray,
    binned: dict[str, BinnedMeans],
    log_x: bool = False,
) -> str:
    """Relative error of the mean of each scalar observable in bins of a condition, with its 1 sigma error."""
    names = list(binned)
    ncols = 4
    nrows = max(1, -(-len(names) // ncols))
    height = 2.2 * nrows + 0.4
    fig = Figure(figsize=(3.0 * ncols, height))  # fixed margins: a constrained layout of many panels is slow
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.05, top=1 - 0.75 / height, wspace=0.25, hspace=0.45)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    centres = np.sqrt(edges[1:] * edges[:-1]) if log_x else 0.5 * (edges[1:] + edges[:-1])
    for ax, name in zip(axes, names, strict=False):
        values = binned[name]
        ax.axhline(0.0, color=REFERENCE, linewidth=0.8)
        ax.errorbar(
            centres, values.relative_error, yerr=values.relative_error_uncertainty, fmt="o", ms=2, color=GENERATED
        )
        ax.set_title(name, fontsize=7)
        ax.tick_params(labelsize=6)
        if log_x:
            ax.set_xscale("log")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(f"relative error of the mean, (gen - ref) / ref, in bins of {variable}", fontsize=9)
    return _save(fig, folder, file_name)


def plot_spectrum(folder: Path, edges: np.ndarray, counts_gen: np.ndarray, counts_ref: np.ndarray, what: str) -> str:
    """Cell (voxel) energy spectrum of the whole files, per shower, log-log, with its ratio; ``spectrum.png``."""
    fig = Figure(figsize=(5.6, 4.6))
    fig.subplots_adjust(left=0.14, right=0.97, top=0.95, bottom=0.11, hspace=0.06)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fractions = [counts / max(counts.sum(), 1.0) for counts in (counts_ref, counts_gen)]
    for fraction, colour, label in zip(fractions, (REFERENCE, GENERATED), ("reference", "generated"), strict=True):
        top.stairs(fraction, edges, color=colour, label=label)
    top.set_xscale("log")
    top.set_yscale("log", nonpositive="mask")
    positive = np.concatenate(fractions)
    positive = positive[positive > 0]
    if positive.size:
        top.set_ylim(0.3 * positive.min(), 3.0 * positive.max())
        occupied = np.flatnonzero((counts_ref + counts_gen) > 0)
        top.set_xlim(edges[max(occupied[0] - 1, 0)], edges[min(occupied[-1] + 2, len(edges) - 1)])
    top.set_ylabel(f"fraction of the non-zero {what}s")
    top.legend(fontsize=8)
    ratio, error = _ratio(counts_gen, counts_ref, counts_gen.sum(), counts_ref.sum())
    centres = np.sqrt(edges[1:] * edges[:-1])
    bottom.errorbar(centres, ratio, yerr=error, fmt="o", ms=2, color=GENERATED)
    bottom.axhline(1.0, color=REFERENCE, linewidth=0.8)
    bottom.set_ylim(0.0, 2.0)
    bottom.set_xscale("log")
    bottom.set_xlabel(f"{what} energy [GeV]")
    bottom.set_ylabel("gen / ref")
    return _save(fig, folder, "spectrum.png")


def plot_correlations(folder: Path, correlations: dict) -> str:
    """Correlation matrices of the generated and reference showers and their difference; ``correlations.png``."""
    names = correlations["names"]
    fig = Figure(figsize=(16.0, 5.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, key, title, scale in (
        (axes[0], "generated", "generated", 1.0),
        (axes[1], "reference", "reference", 1.0),
        (axes[2], "difference", "generated - reference", 0.3),
    ):
        image = ax.imshow(np.asarray(correlations[key], dtype=float), cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.7)
    return _save(fig, folder, "correlations.png")


def plot_roc(folder: Path, classifier: dict) -> str:
    """ROC curves (first repeat, raw network outputs) of the classifier tests; ``classifier_roc.png``."""
    fig = Figure(figsize=(4.8, 4.4), layout="constrained")
    ax = fig.subplots()
    for kind, colour in (("low_level", "tab:blue"), ("high_level", "tab:orange")):
        result = classifier.get(kind)
        if not result:
            continue
        roc = result["runs"][0]["roc"]
        ax.plot(
            roc["false_positive_rate"],
            roc["true_positive_rate"],
            color=colour,
            label=f"{kind.replace('_', '-')}: AUC {result['auc']:.3f}",
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="indistinguishable")
    ax.set_xlabel("reference showers taken for generated")
    ax.set_ylabel("generated showers recognized")
    ax.legend(fontsize=8)
    return _save(fig, folder, "classifier_roc.png")


def plot_conditions(
    folder: Path,
    energy_gen: np.ndarray,
    energy_ref: np.ndarray,
    theta_gen: np.ndarray | None,
    theta_ref: np.ndarray | None,
) -> str:
    """Incident-energy (and angle) distributions of both files; ``conditions.png``."""
    panels = [("incident energy [GeV]", energy_gen, energy_ref)]
    if theta_gen is not None and theta_ref is not None:
        panels.append(("theta [rad]", theta_gen, theta_ref))
    fig = Figure(figsize=(4.6 * len(panels), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (label, gen, ref) in zip(axes, panels, strict=True):
        edges = np.histogram_bin_edges(np.concatenate([gen, ref]), bins=40)
        ax.hist(ref, bins=edges, histtype="step", color=REFERENCE, density=True, label="reference")
        ax.hist(gen, bins=edges, histtype="step", color=GENERATED, density=True, label="generated")
        ax.set_xlabel(label)
        ax.legend(fontsize=8)
    return _save(fig, folder, "conditions.png")
