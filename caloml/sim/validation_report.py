"""The simulator's validation report: every measurement of :data:`caloml.sim.validation.VALIDATIONS` plus the
CaloChallenge dataset-2 check, compared with :data:`caloml.sim.validation_targets.TARGETS`, drawn as plots and
written as a Markdown table (``validation.md``) and a JSON record (``validation.json``).

Usage::

    from caloml.sim.validation_report import write_validation_report
    report = write_validation_report("runs/validation", seed=1)

Measurement ``k`` is seeded with ``seed + SEED_OFFSETS[k]``, so ``seed=1`` reproduces the ``measure_*`` functions'
default seeds; plots show exactly the showers that were measured. See ``docs/simulator.md``.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import caloml
from caloml.json_values import json_plain
from caloml.report_directory import report_dir
from caloml.sim import validation
from caloml.sim.crystal_validation import measure_crystal, plot_crystal
from caloml.sim.validation_measurements import cell_statistics, longitudinal_profiles, measure_calochallenge
from caloml.sim.validation_plots import (
    plot_angle,
    plot_calochallenge,
    plot_gamma_pi0,
    plot_lateral,
    plot_longitudinal,
    plot_occupancy,
    plot_pion_ratio,
)
from caloml.sim.validation_targets import derive_figures, evaluate_targets

__all__ = ["FULL_SIZES", "QUICK_SIZES", "SEED_OFFSETS", "write_validation_report"]

#: Added to the report's seed for each measurement: seed=1 gives the ``measure_*`` functions' default seeds.
SEED_OFFSETS: dict[str, int] = {
    "longitudinal": 0,
    "photon_shift": 10,
    "lateral_containment": 20,
    "angle_response": 30,
    "occupancy": 40,
    "pion_ratio": 50,
    "gamma_pi0": 60,
    "calochallenge": 70,
    "crystal": 80,
}

#: Showers of each measurement (its ``n``): (quick mode, the whole report in well under a minute; the full report,
#: a few minutes on one core).
_SHOWERS: dict[str, tuple[int, int]] = {
    "longitudinal": (30, 300),
    "photon_shift": (60, 600),
    "lateral_containment": (20, 200),
    "angle_response": (20, 200),
    "occupancy": (10, 100),
    "pion_ratio": (150, 2000),
    "gamma_pi0": (40, 400),
    "calochallenge": (300, 2000),
    "crystal": (300, 2000),
}
#: Keyword arguments (besides the seed) of each measurement in quick mode.
QUICK_SIZES: dict[str, dict[str, Any]] = {name: {"n": quick} for name, (quick, _) in _SHOWERS.items()}
#: Keyword arguments (besides the seed) of each measurement in the full report.
FULL_SIZES: dict[str, dict[str, Any]] = {name: {"n": full} for name, (_, full) in _SHOWERS.items()}


@dataclass(frozen=True)
class _Step:
    """One measurement of the report, the plot data it needs beyond its figures, and its plotter."""

    measure: Callable[..., Any]
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    plot: Callable[[Path, dict[str, Any], dict[str, Any]], list[str]] | None = None


def _steps() -> dict[str, _Step]:
    """Every measurement of ``VALIDATIONS`` (in its order) and the CaloChallenge check, with plot data and plots."""
    known: dict[str, _Step] = {
        "longitudinal": _Step(
            validation.measure_longitudinal,
            lambda kw: longitudinal_profiles(
                kw.get("energies_gev", _default(validation.measure_longitudinal, "energies_gev")), kw["n"], kw["seed"]
            ),
            plot_longitudinal,
        ),
        "lateral_containment": _Step(
            validation.measure_lateral_containment,
            lambda kw: {
                "radii_rm": (radii := np.linspace(0.0, 5.0, 101)).tolist(),
                "containment": validation.lateral_containment_curve(
                    radii,
                    kw.get("energy_gev", _default(validation.measure_lateral_containment, "energy_gev")),
                    kw["n"],
                    kw["seed"],
                ).tolist(),
            },
            plot_lateral,
        ),
        "angle_response": _Step(validation.measure_angle_response, None, plot_angle),
        "occupancy": _Step(
            validation.measure_occupancy,
            lambda kw: cell_statistics(
                kw.get("energy_gev", _default(validation.measure_occupancy, "energy_gev")), kw["n"], kw["seed"]
            ),
            plot_occupancy,
        ),
        "pion_ratio": _Step(
            validation.measure_pion_ratio,
            lambda kw: validation.hcal_ecal_ratios(
                kw.get("energy_bins_gev", _default(validation.measure_pion_ratio, "energy_bins_gev")),
                kw["n"],
                kw["seed"],
            ),
            plot_pion_ratio,
        ),
        "gamma_pi0": _Step(validation.measure_gamma_pi0_separation, None, plot_gamma_pi0),
    }
    steps = {}
    for name, function in validation.VALIDATIONS.items():
        step = known.get(name)
        steps[name] = step if step is not None and step.measure is function else _Step(function)
    steps["calochallenge"] = _Step(measure_calochallenge, None, plot_calochallenge)
    steps["crystal"] = _Step(measure_crystal, None, plot_crystal)
    return steps


def _default(function: Callable[..., Any], parameter: str) -> Any:
    return inspect.signature(function).parameters[parameter].default


def _arguments(name: str, function: Callable[..., Any], seed: int, quick: bool, index: int) -> dict[str, Any]:
    """Keyword arguments of one measurement: the size table's, plus the seed where the function takes one."""
    parameters = inspect.signature(function).parameters
    sizes = (QUICK_SIZES if quick else FULL_SIZES).get(name, {})
    kwargs = {k: v for k, v in sizes.items() if k in parameters}
    if "seed" in parameters:
        kwargs["seed"] = seed + SEED_OFFSETS.get(name, 10 * index)
    return kwargs


def _format(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"


def _markdown(report: dict[str, Any]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    summary = report["summary"]
    lines = [
        "# caloml simulator validation",
        "",
        f"caloml {report['caloml_version']}, seed {report['seed']}, {'quick' if report['quick'] else 'full'} sizes; "
        f"{summary['pass']} of {summary['pass'] + summary['fail']} targets pass; "
        f"{report['elapsed_s']['total']:.0f} s. Targets and their sources: `validation.json`.",
        "",
        "| quantity | measured | target | status |",
        "|---|---|---|---|",
    ]
    for row in report["targets"]:
        unit = f" {row['unit']}" if row["unit"] else ""
        measured = _format(row["measured"]) + unit
        target = f"{row['expected']}; accept {row['tolerance']}{unit}"
        status = "pass" if row["status"] == "pass" else "**fail**"
        lines.append(f"| {cell(row['name'])} | {cell(measured)} | {cell(target)} | {status} |")
    lines += ["", "## Sizes and seeds", ""]
    for name, kwargs in report["sizes"].items():
        arguments = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        lines.append(f"- `{name}`: {arguments} ({report['elapsed_s'][name]:.1f} s)")
    lines += ["", "## Plots", ""]
    lines += [f"![{Path(name).stem}]({name})" for name in report["plots"]]
    return "\n".join(lines) + "\n"


def write_validation_report(
    out_dir: str | Path,
    *,
    seed: int = 1,
    quick: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every simulator validation, compare it with the targets and write the report into ``out_dir``.

    Writes the plots (PNG), ``validation.md`` (a table quantity | measured | target | status, with the seed and
    sizes) and ``validation.json`` (every measurement, every figure, every target with its status, the seed,
    the sizes, the caloml version, the timings). The report is built in a temporary directory next to
    ``out_dir`` and renamed at the end, so a failed run leaves no partial report.

    Args:
        out_dir: the report directory; it must not exist or be empty unless ``overwrite``.
        seed: base seed; measurement ``k`` uses ``seed + SEED_OFFSETS[k]``.
        quick: small samples (:data:`QUICK_SIZES`, well under a minute) instead of :data:`FULL_SIZES` (minutes).
        overwrite: replace an existing, non-empty ``out_dir``.
        progress: show a progress bar over the measurements.

    Returns:
        The content of ``validation.json``.

    Raises:
        OutputExistsError: ``out_dir`` exists, is not empty and ``overwrite`` is False.
    """
    out = Path(out_dir)
    with report_dir(out, overwrite, "validation report") as tmp:
        start = time.perf_counter()
        measurements: dict[str, Any] = {}
        sizes: dict[str, dict[str, Any]] = {}
        elapsed: dict[str, float] = {}
        plots: list[str] = []
        steps = _steps()
        bar = tqdm(steps.items(), total=len(steps), desc="validation", unit="check", disable=None if progress else True)
        with bar:
            for index, (name, step) in enumerate(bar):
                bar.set_postfix_str(name)
                t0 = time.perf_counter()
                kwargs = _arguments(name, step.measure, seed, quick, index)
                sizes[name] = json_plain(kwargs)
                measurements[name] = json_plain(step.measure(**kwargs))
                if step.plot is not None:
                    extra = step.extra(kwargs) if step.extra is not None else {}
                    result = measurements[name] | {"n": kwargs.get("n")}
                    plots += step.plot(tmp, result, extra)
                elapsed[name] = time.perf_counter() - t0
        elapsed["total"] = time.perf_counter() - start
        figures = derive_figures(measurements)
        targets = evaluate_targets(figures)
        failed = [row["name"] for row in targets if row["status"] == "fail"]
        report: dict[str, Any] = {
            "caloml_version": caloml.__version__,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seed": seed,
            "quick": quick,
            "seed_offsets": dict(SEED_OFFSETS),
            "sizes": sizes,
            "elapsed_s": {k: round(v, 2) for k, v in elapsed.items()},
            "measurements": measurements,
            "figures": figures,
            "targets": targets,
            "summary": {"pass": len(targets) - len(failed), "fail": len(failed), "failed": failed},
            "plots": plots,
        }
        report = json_plain(report)
        (tmp / "validation.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        (tmp / "validation.md").write_text(_markdown(report), encoding="utf-8")
    return report
