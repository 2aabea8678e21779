"""The figures of the learning curve (:mod:`caloml.evaluate.learning_curve`): one panel per metric, one line per run.

See ``docs/evaluation.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from caloml.atomic_files import atomic_write_with

__all__ = ["PANELS", "plot_curve"]

#: Panels of the figures: (row key, error key or None, axis label).
PANELS: tuple[tuple[str, str | None, str], ...] = (
    ("sampling_fraction_error_percent", None, "sampling-fraction error [%]"),
    ("width_x_relative_error_percent", None, "mean width x, relative error [%]"),
    ("width_y_relative_error_percent", None, "mean width y, relative error [%]"),
    ("hits_relative_error_percent", None, "mean hit cells, relative error [%]"),
    ("largest_separation_power", None, "largest separation power"),
    ("auc_low_level", "auc_low_level_error", "classifier AUC (low-level)"),
    ("auc_high_level", "auc_high_level_error", "classifier AUC (high-level)"),
)
_DPI = 90


def plot_curve(path: Path, rows: list[dict[str, Any]], x_key: str, x_label: str) -> Path:
    """Write the figure ``path``: every metric of :data:`PANELS` against ``x_key``, one line per run (its label).

    Points without a value (a metric that was skipped, no training time) are left out; a panel without any point
    says so. Returns ``path``.
    """
    fig = Figure(figsize=(15, 7.5), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    labels = list(dict.fromkeys(row["label"] for row in rows))
    for ax, (key, error_key, y_label) in zip(axes, PANELS, strict=False):
        drawn = False
        for label in labels:
            points = [r for r in rows if r["label"] == label and r.get(x_key) is not None and r.get(key) is not None]
            if not points:
                continue
            x = [r[x_key] for r in points]
            y = [r[key] for r in points]
            errors = [r.get(error_key) or 0.0 for r in points] if error_key else None
            ax.errorbar(x, y, yerr=errors, marker="o", markersize=3, capsize=2, label=label)
            drawn = True
        if key.endswith("relative_error_percent"):
            ax.axhline(0.0, color="grey", linewidth=0.8)
        if key.startswith("auc"):
            ax.axhline(0.5, color="grey", linewidth=0.8)
        if not drawn:
            ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    axes[-1].axis("off")
    if handles:
        axes[-1].legend(handles, names, loc="center", title="run (training precision)")
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=_DPI, format="png"))
    return path
