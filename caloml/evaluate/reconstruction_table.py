"""The comparison table of the reconstruction evaluation: every model, and every network against every baseline.

:func:`comparison_table` builds the rows (JSON-ready) from the classification and regression metrics of
:mod:`caloml.evaluate.reconstruction`; :func:`comparison_markdown` writes them as ``comparison.md``. See
``docs/reconstruction.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from caloml.data.reconstruction_tasks import ReconstructionTask
from caloml.evaluate.reconstruction_models import ReconstructionModel

__all__ = ["comparison_markdown", "comparison_table"]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def comparison_table(
    models: Sequence[ReconstructionModel],
    classification: dict[str, Any],
    regression: dict[str, Any],
    task: ReconstructionTask,
    n_events: int,
    linear: str | None,
    selection: dict[str, Any],
) -> dict[str, Any]:
    """Rows (one per model) and pairs (every network against every baseline of the same kind of output).

    ``auc_error`` is the Hanley-McNeil standard error of the AUC; ``precision`` the arithmetic of a Triforce
    network (None for a baseline). Resolutions at low and high energy are those of the lowest and highest
    true-energy bins holding at least ``min_bin_events`` events of the particle (``selection[particle]["low_bin"]``,
    ``["high_bin"]``: 10-35 and 485-510 GeV with the default bins and enough events; the same bins for every
    model). Pairs:
    ``auc_difference`` (network - baseline) and ``accuracy_difference`` for two classifiers; per particle
    ``resolution_ratio_low`` / ``_high`` (baseline / network, > 1: the network is better) for two regressors.
    """
    rows = []
    for model in models:
        row: dict[str, Any] = {
            "model": model.name,
            "kind": model.kind,
            "baseline": model.baseline,
            "n_test_events": n_events,
            "precision": model.precision,
            "auc": None,
            "auc_error": None,
            "accuracy": None,
        }
        if model.name in classification:
            row["auc"] = classification[model.name]["auc"]
            row["auc_error"] = classification[model.name].get("auc_error")
            row["accuracy"] = classification[model.name]["accuracy"]
        for particle in task.particles:
            low, high = selection[particle]["low_bin"], selection[particle]["high_bin"]
            result = regression.get(model.name, {}).get(particle)
            binned = result["binned"] if result else None
            fit = result["fit"] if result else {}
            ratio = result.get("linear_over_model") if result else None
            row[particle] = {
                "n_events": result["n_events"] if result else None,
                "resolution_low": _first(binned, "resolution", low),
                "resolution_high": _first(binned, "resolution", high),
                "bias_low": _first(binned, "bias", low),
                "bias_high": _first(binned, "bias", high),
                "fit_a": fit.get("a"),
                "fit_b": fit.get("b"),
                "fit_c": fit.get("c"),
                "fit_a_error": fit.get("a_error"),
                "fit_b_error": fit.get("b_error"),
                "fit_c_error": fit.get("c_error"),
                "linear_over_model_low": None if ratio is None or model.name == linear else _item(ratio, low),
                "linear_over_model_high": None if ratio is None or model.name == linear else _item(ratio, high),
            }
        rows.append(row)
    versus = []
    for network in (m for m in models if not m.baseline):
        for baseline in (m for m in models if m.baseline):
            pair: dict[str, Any] = {"model": network.name, "baseline": baseline.name, "baseline_kind": baseline.kind}
            if network.classifier and baseline.classifier:
                a, b = classification[network.name], classification[baseline.name]
                pair["auc_difference"] = a["auc"] - b["auc"]
                pair["accuracy_difference"] = a["accuracy"] - b["accuracy"]
            if network.regressor and baseline.regressor:
                for particle in task.particles:
                    mine = regression.get(network.name, {}).get(particle)
                    theirs = regression.get(baseline.name, {}).get(particle)
                    if mine is None or theirs is None:
                        continue
                    ratio = np.asarray(theirs["binned"]["resolution"]) / np.asarray(mine["binned"]["resolution"])
                    pair[particle] = {
                        "resolution_ratio_low": _item(ratio, selection[particle]["low_bin"]),
                        "resolution_ratio_high": _item(ratio, selection[particle]["high_bin"]),
                    }
            versus.append(pair)
    bins = {p: {key: selection[p][key] for key in ("low_bin_gev", "high_bin_gev")} for p in task.particles}
    return {"rows": rows, "versus": versus, "linear_reference": linear, "bins": bins}


def _item(values: Any, index: int | None) -> float | None:
    if index is None:
        return None
    value = float(np.asarray(values, dtype=np.float64)[index])
    return value if math.isfinite(value) else None


def _first(binned: dict[str, Any] | None, key: str, index: int | None) -> float | None:
    return None if binned is None else _item(binned[key], index)


def comparison_markdown(record: dict[str, Any]) -> str:
    """The comparison table of ``metrics.json`` as Markdown."""
    comparison = record["comparison"]
    particles = record["task"]["particles"]

    def span(bin_gev: list[float] | None) -> str:
        return "none" if bin_gev is None else f"{bin_gev[0]:g}-{bin_gev[1]:g} GeV"

    bins = "; ".join(
        f"{p}: low {span(comparison['bins'][p]['low_bin_gev'])}, high {span(comparison['bins'][p]['high_bin_gev'])}"
        for p in particles
    )
    linear = comparison["linear_reference"]
    lines = [
        f"# Reconstruction comparison, task {record['task']['name']}",
        "",
        f"{record['test']['n_events']} test events (per class {record['test']['n_per_class']}), the same for every "
        f"model. Resolution = std of (true - predicted) / true in the lowest and highest true-energy bins with at "
        f"least {record['options']['min_bin_events']} events ({bins}); fit sigma/E = sqrt(a^2/E + b^2 + (c/E)^2), "
        f"E in GeV" + (f"; lin/model = resolution of {linear} over the model's." if linear else "."),
        "",
    ]
    precisions = sorted({row["precision"] for row in comparison["rows"] if row.get("precision")})
    if precisions:
        lines += [
            f"Triforce networks computed in {', '.join(precisions)}; the baselines in their own arithmetic"
            " (--precision does not affect them). AUC +- its Hanley-McNeil standard error.",
            "",
        ]
    header = ["model", "kind", "AUC", "accuracy"]
    for particle in particles:
        header += [f"{particle} events", f"{particle} res. low", f"{particle} res. high", f"{particle} fit a, b, c"]
        if comparison["linear_reference"]:
            header += [f"{particle} lin/model low", f"{particle} lin/model high"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in comparison["rows"]:
        auc = _fmt(row["auc"])
        if row["auc"] is not None and row.get("auc_error") is not None:
            auc += f" +- {_fmt(row['auc_error'], 2)}"
        cells = [row["model"], row["kind"] + (" (baseline)" if row["baseline"] else ""), auc]
        cells.append(_fmt(row["accuracy"]))
        for particle in particles:
            p = row[particle]
            fit = "n/a" if p["fit_a"] is None else f"{p['fit_a']:.3g}, {p['fit_b']:.3g}, {p['fit_c']:.3g}"
            cells += [_fmt(p["n_events"]), _fmt(p["resolution_low"]), _fmt(p["resolution_high"]), fit]
            if comparison["linear_reference"]:
                cells += [_fmt(p["linear_over_model_low"], 3), _fmt(p["linear_over_model_high"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    if comparison["versus"]:
        lines += ["", "## Every network against every baseline", ""]
        lines += ["| network | baseline | AUC difference | accuracy difference | baseline/network resolution |"]
        lines += ["|---|---|---|---|---|"]
        for pair in comparison["versus"]:
            ratios = "; ".join(
                f"{p}: low {_fmt(pair[p]['resolution_ratio_low'], 3)}, high {_fmt(pair[p]['resolution_ratio_high'], 3)}"
                for p in particles
                if p in pair
            )
            lines.append(
                f"| {pair['model']} | {pair['baseline']} | {_fmt(pair.get('auc_difference'))} | "
                f"{_fmt(pair.get('accuracy_difference'))} | {ratios or 'n/a'} |"
            )
    return "\n".join(lines) + "\n"
