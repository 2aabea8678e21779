"""Figures of the reconstruction evaluation (PNG, matplotlib's object API, no pyplot).

Each function draws one figure from the JSON-ready metrics of
:func:`caloml.evaluate.reconstruction.evaluate_reconstruction` into ``folder`` and returns the file name.
Networks are drawn with solid lines and filled markers, baselines dashed with open markers. See
``docs/evaluation.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from caloml.observables.reconstruction_metrics import LCD_ECAL_REFERENCE, resolution_function

__all__ = [
    "plot_accuracy",
    "plot_bias",
    "plot_resolution",
    "plot_resolution_ratio",
    "plot_roc",
]

_DPI = 90


def _figure(n_panels: int = 1) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(5.2 * n_panels, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]
    return fig, axes


def _save(fig: Figure, folder: Path, name: str) -> str:
    fig.savefig(folder / name, dpi=_DPI)
    return name


def _style(baseline: bool) -> dict[str, Any]:
    return {"linestyle": "--", "markerfacecolor": "none"} if baseline else {"linestyle": "-"}


def _values(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def plot_roc(folder: Path, curves: Mapping[str, tuple[np.ndarray, np.ndarray, float, bool]], task_label: str) -> str:
    """ROC curves: ``curves[name] = (fpr, tpr, auc, baseline)``; class 1 (the pion) is the positive class."""
    fig, (ax,) = _figure()
    for name, (fpr, tpr, auc, baseline) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.4f})", linestyle="--" if baseline else "-")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.7, linestyle=":")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(f"ROC, {task_label}")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, folder, "roc.png")


def plot_accuracy(
    folder: Path, name: str, classification: Mapping[str, Any], key: str, xlabel: str, baselines: set[str]
) -> str:
    """Accuracy in bins of ``key`` (``energy`` or ``eta``) of every classifier."""
    fig, (ax,) = _figure()
    for model, result in classification.items():
        binned = result[f"accuracy_vs_{key}"]
        edges = np.asarray(binned["edges"], dtype=np.float64)
        centres = 0.5 * (edges[1:] + edges[:-1])
        ax.errorbar(
            centres,
            _values(binned["accuracy"]),
            yerr=_values(binned["accuracy_error"]),
            xerr=0.5 * np.diff(edges),
            marker="o",
            markersize=3,
            capsize=0,
            label=model,
            **_style(model in baselines),
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    return _save(fig, folder, name)


def _per_particle_panels(regression: Mapping[str, Any], particles: Sequence[str]) -> tuple[Figure, dict[str, Any]]:
    fig, axes = _figure(len(particles))
    return fig, dict(zip(particles, axes, strict=True))


def _results_of(regression: Mapping[str, Any], particle: str) -> Iterator[tuple[str, Any]]:
    """``(model, result)`` of every model of ``regression`` that has a result for ``particle``."""
    for model, per_particle in regression.items():
        result = per_particle.get(particle)
        if result is not None:
            yield model, result


def _label_energy_panel(
    ax: Any, particle: str, ylabel: str, *, reference: float | None = None, legend_size: int = 7
) -> None:
    """Finish a per-particle panel over the true energy: a grey line at ``reference`` (if any), the particle as the
    title, the axis labels and the legend."""
    if reference is not None:
        ax.axhline(reference, color="grey", linewidth=0.7)
    ax.set_title(particle)
    ax.set_xlabel("true energy (GeV)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend_size)


def plot_bias(folder: Path, regression: Mapping[str, Any], particles: Sequence[str], baselines: set[str]) -> str:
    """Relative bias ``<(true - predicted) / true>`` vs the true energy, one panel per particle."""
    fig, panels = _per_particle_panels(regression, particles)
    for particle, ax in panels.items():
        for model, result in _results_of(regression, particle):
            binned = result["binned"]
            ax.errorbar(
                _values(binned["mean_energy_gev"]),
                _values(binned["bias"]),
                yerr=_values(binned["bias_error"]),
                marker="o",
                markersize=3,
                label=model,
                **_style(model in baselines),
            )
        _label_energy_panel(ax, particle, "relative bias (true - pred) / true", reference=0.0)
    return _save(fig, folder, "bias_vs_energy.png")


def plot_resolution(folder: Path, regression: Mapping[str, Any], particles: Sequence[str], baselines: set[str]) -> str:
    """Relative resolution vs the true energy with each fit and the LCD ECAL reference, one panel per particle."""
    fig, panels = _per_particle_panels(regression, particles)
    grid = np.linspace(10.0, 510.0, 200)
    for particle, ax in panels.items():
        for model, result in _results_of(regression, particle):
            binned = result["binned"]
            line = ax.errorbar(
                _values(binned["mean_energy_gev"]),
                _values(binned["resolution"]),
                yerr=_values(binned["resolution_error"]),
                marker="o",
                markersize=3,
                linestyle="none",
                markerfacecolor="none" if model in baselines else None,
                label=model,
            )
            fit = result["fit"]
            if fit.get("available"):
                ax.plot(
                    grid,
                    resolution_function(grid, fit["a"], fit["b"], fit["c"]),
                    color=line.lines[0].get_color(),
                    linestyle="--" if model in baselines else "-",
                    linewidth=1.0,
                    label=f"fit a={fit['a']:.3f} b={fit['b']:.4f} c={fit['c']:.2f}",
                )
        ref = LCD_ECAL_REFERENCE
        ax.plot(
            grid,
            resolution_function(grid, ref["a"], ref["b"], ref["c"]),
            color="black",
            linestyle=":",
            label=f"LCD ECAL (a={ref['a']}, b={ref['b']})",
        )
        ax.set_yscale("log")
        _label_energy_panel(ax, particle, "relative resolution σ / E", legend_size=6)
    return _save(fig, folder, "resolution_vs_energy.png")


def plot_resolution_ratio(
    folder: Path, regression: Mapping[str, Any], particles: Sequence[str], linear: str, baselines: set[str]
) -> str:
    """Resolution of the linear regression over each model's (an improvement factor), one panel per particle."""
    fig, panels = _per_particle_panels(regression, particles)
    for particle, ax in panels.items():
        for model, result in _results_of(regression, particle):
            if model == linear or result.get("linear_over_model") is None:
                continue
            ax.plot(
                _values(result["binned"]["mean_energy_gev"]),
                _values(result["linear_over_model"]),
                marker="o",
                markersize=3,
                label=model,
                **_style(model in baselines),
            )
        _label_energy_panel(ax, particle, f"resolution {linear} / model", reference=1.0)
    return _save(fig, folder, "resolution_ratio_to_linear.png")
