"""Writing an evaluation: the JSON record of every metric, the HTML report, and their atomic installation.

An evaluation directory holds ``report.html`` (self-contained: inline style, no script, the plots as PNG files
beside it, a summary table first), ``metrics.json`` (every metric; the top-level keys are :data:`JSON_KEYS`) and
the PNG files. It is built in a temporary directory next to the destination and renamed into place when
complete (:func:`caloml.report_directory.report_dir`), so a failed run leaves nothing behind; an existing
non-empty destination is refused unless ``overwrite``.

Top-level keys of ``metrics.json``:

==================  ===========================================================================================
``caloml_version``  the package version
``created_utc``     ISO time of the evaluation
``command``         ``"gen"``
``seed``            the seed of every random draw (splits, subsets, network initializations)
``options``         every resolved option (bins, sizes, repeats, seed...)
``layout``          ``"lcd"`` or ``"calochallenge"``; ``geometry``: the calorimeter
``files``           path, events, shapes, energy (and angle) ranges and provenance of each file
``conditions``      KS statistic and p-value of the incident energies (and angles) of the two files
``binning``         the energy (GeV) and angle (rad) bin edges, the angle key (``theta``, or ``mtheta`` when only
                    that is common to both files), the showers per bin, and the histogram bin count
``observables``     per observable: label, unit, and per column separation power, its noise floor, KS
                    statistic and p-value, ``flagged``, means, relative mean error, and per energy / angle bin the
                    relative errors, their uncertainties, pulls and counts (scalars also store their histogram)
``spectrum``        the cell (voxel) energy spectra (counts of non-zero cells on fixed log edges), their
                    separation power, and the noise floor of as many independent cells (a lower bound)
``correlations``    correlation matrices (generated, reference, difference) and the largest difference
``classifier``      ``available``, and per input (``low_level``, ``high_level``): AUC, its spread over the
                    repeats and its statistical error, the Jensen-Shannon estimate, the network, per-repeat runs
``gan_train_test``  ``available`` and ``reason``, or the accuracies of the GAN-train / GAN-test table
``hit_patterns``    hit-indicator Pearson-matrix differences, hits per layer / radius, the hit-count distribution
                    and the double-hit rate (:mod:`caloml.evaluate.hit_patterns`)
``summary``         the numbers of the report's first table (see :func:`caloml.evaluate.generative.summarize`)
``timings_s``       wall time of each stage (s)
``plots``           the PNG files of the report
==================  ===========================================================================================
See ``docs/evaluation.md``.
"""

from __future__ import annotations

import dataclasses
import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import caloml
from caloml.json_values import json_plain

__all__ = ["HEADER_KEYS", "HTML_NAME", "JSON_KEYS", "JSON_NAME", "render_html", "report_header", "write_outputs"]

JSON_NAME = "metrics.json"
HTML_NAME = "report.html"
#: The keys every evaluation's ``metrics.json`` starts with (see :func:`report_header`).
HEADER_KEYS: tuple[str, ...] = ("caloml_version", "created_utc", "command", "seed", "options")
JSON_KEYS: tuple[str, ...] = (
    *HEADER_KEYS,
    "layout",
    "geometry",
    "files",
    "conditions",
    "binning",
    "observables",
    "spectrum",
    "correlations",
    "classifier",
    "gan_train_test",
    "hit_patterns",
    "summary",
    "timings_s",
    "plots",
)


def report_header(command: str, options: Any) -> dict[str, Any]:
    """The :data:`HEADER_KEYS` of an evaluation's ``metrics.json``: the caloml version, the creation time (UTC, ISO
    8601, seconds), the ``command`` (``gen``, ``reco``), and the seed and every field of ``options`` (the command's
    options dataclass, which has a ``seed``)."""
    return {
        "caloml_version": caloml.__version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "seed": options.seed,
        "options": dataclasses.asdict(options),
    }


def write_outputs(folder: Path, results: dict) -> dict:
    """Write ``metrics.json`` and ``report.html`` of ``results`` into ``folder``; returns the JSON-ready results."""
    missing = [key for key in JSON_KEYS if key not in results]
    if missing:
        raise ValueError(f"results lack the documented keys {missing}")
    record = json_plain(results)
    (folder / JSON_NAME).write_text(json.dumps(record, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    (folder / HTML_NAME).write_text(render_html(record), encoding="utf-8")
    return record


# -- HTML ---------------------------------------------------------------------------------------------------------
_STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em 0; font-size: 0.88em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.55em; text-align: right; }
th { background: #eee; } td.name, th.name { text-align: left; }
tr.flag td { background: #fde4e1; }
.figures img { max-width: 49%; vertical-align: top; }
.wide img { max-width: 100%; }
.note { color: #555; font-size: 0.9em; }
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _row(cells: list[Any], *, header: bool = False, css: str = "") -> str:
    tag = "th" if header else "td"
    parts = []
    for i, cell in enumerate(cells):
        klass = ' class="name"' if i == 0 else ""
        parts.append(f"<{tag}{klass}>{cell if isinstance(cell, str) and header else _fmt(cell)}</{tag}>")
    row_class = f' class="{css}"' if css else ""
    return f"<tr{row_class}>{''.join(parts)}</tr>"


def _classifier_cell(result: dict | None) -> str:
    if not result:
        return "not run"
    spread = f" ± {result['auc_std']:.3f} (spread)" if result.get("auc_std") is not None else ""
    return f"{result['auc']:.3f}{spread} ± {result['auc_stat_error']:.3f} (stat.)"


def _summary_table(record: dict) -> str:
    summary = record["summary"]
    classifier = record["classifier"]
    rows = [
        ("showers: generated / reference", f"{summary['n_generated']} / {summary['n_reference']}"),
        (
            "consistent with the reference (no flagged observable, no significant classifier AUC)",
            _fmt(summary["consistent_with_reference"]),
        ),
        (
            f"observable columns flagged (KS, Holm, family level {record['options']['alpha']})",
            f"{summary['n_flagged_columns']} of {summary['n_columns']}",
        ),
        ("flagged observables", html.escape(", ".join(summary["flagged_observables"]) or "none")),
        ("median separation power of the scalar observables", _fmt(summary["median_separation_power"])),
        ("largest separation power", html.escape(summary["largest_separation_power_text"])),
        ("classifier AUC, low-level (cells / E_inc, log E_inc)", _classifier_cell(classifier.get("low_level"))),
        ("classifier AUC, high-level (features)", _classifier_cell(classifier.get("high_level"))),
        (
            "Jensen-Shannon estimate, low / high level (nats, max ln 2 = 0.693)",
            f"{_fmt(summary['jsd_low_level'])} / {_fmt(summary['jsd_high_level'])}",
        ),
        ("largest difference of the correlation coefficients", _fmt(summary["correlation_max_abs_difference"])),
        ("GAN-train / GAN-test", html.escape(summary["gan_train_test_text"])),
        ("wall time", f"{record['timings_s']['total']:.1f} s"),
    ]
    lines = ["<table>", _row(["quantity", "value"], header=True)]
    lines += [f'<tr><td class="name">{html.escape(name)}</td><td>{value}</td></tr>' for name, value in rows]
    lines.append("</table>")
    return "\n".join(lines)


def _observables_table(record: dict) -> str:
    header = [
        "observable",
        "columns",
        "sep. power (max)",
        "noise floor",
        "KS (max)",
        "p (min)",
        "max |rel. err.| per E bin",
        "pull χ²/bin (max)",
        "flagged",
    ]
    lines = ["<table>", _row(header, header=True)]
    for name, obs in record["observables"].items():
        columns = obs["columns"]
        flagged = sum(c["flagged"] for c in columns)
        sp = [c["separation_power"] for c in columns if c["separation_power"] is not None]
        floor = [c["separation_power_noise_floor"] for c in columns if c["separation_power_noise_floor"] is not None]
        ks = [c["ks_statistic"] for c in columns if c["ks_statistic"] is not None]
        pv = [c["ks_pvalue"] for c in columns if c["ks_pvalue"] is not None]
        rel = [c["energy_bins"]["max_abs_relative_error"] for c in columns]
        rel = [r for r in rel if r is not None]
        chi = [
            c["energy_bins"]["pull_chi2_per_bin"] for c in columns if c["energy_bins"]["pull_chi2_per_bin"] is not None
        ]
        cells = [
            f"{name} ({obs['label']})",
            len(columns),
            max(sp) if sp else None,
            max(floor) if floor else None,
            max(ks) if ks else None,
            min(pv) if pv else None,
            max(rel) if rel and obs["relative_error"] else None,
            max(chi) if chi else None,
            f"{flagged} of {len(columns)}",
        ]
        lines.append(_row(cells, css="flag" if flagged else ""))
    lines.append("</table>")
    return "\n".join(lines)


def _classifier_section(record: dict) -> str:
    classifier = record["classifier"]
    if not classifier.get("available"):
        return f"<p>Not run: {html.escape(classifier.get('reason', ''))}</p>"
    parts = []
    for kind in ("low_level", "high_level"):
        result = classifier.get(kind)
        if not result:
            continue
        runs = ", ".join(f"{run['auc']:.3f}" for run in result["runs"])
        parts.append(
            f"<p><b>{kind.replace('_', '-')}</b> ({result['n_inputs']} inputs; {html.escape(result['input'])}):"
            f" AUC {_classifier_cell(result)}, per repeat {runs}; uncalibrated AUC {result['auc_uncalibrated']:.3f};"
            f" JSD {_fmt(result['jsd_nats'])} nats; {result['runs'][0]['sizes_per_class']['test']} test showers per"
            f" class; significant: {_fmt(result['significant'])}.</p>"
        )
    network = next((classifier[k]["network"] for k in ("low_level", "high_level") if classifier.get(k)), "")
    parts.append(f'<p class="note">Network: {html.escape(network)}. Seeds {html.escape(str(classifier["seeds"]))}.</p>')
    return "\n".join(parts)


def _gan_section(record: dict) -> str:
    gan = record["gan_train_test"]
    if not gan.get("available"):
        return f"<p>Not run: {html.escape(gan.get('reason', ''))}.</p>"
    lines = [
        f"<p>Classifier: {html.escape(str(gan['classifier']))}; accuracy on held-out showers against held-out"
        " background.</p>",
        "<table>",
        _row(["trained on", "tested on reference", "tested on generated"], header=True),
    ]
    for trained in ("reference", "generated"):
        result = gan[f"trained_on_{trained}"]
        cells = [
            f"{result['tested_on_' + test]['accuracy']:.4f} ± {result['tested_on_' + test]['accuracy_error']:.4f}"
            for test in ("reference", "generated")
        ]
        lines.append(f'<tr><td class="name">{trained}</td><td>{cells[0]}</td><td>{cells[1]}</td></tr>')
    lines.append("</table>")
    return "\n".join(lines)


def _images(names: list[str], prefix: str, wide: bool = False) -> str:
    chosen = [n for n in names if n.startswith(prefix)]
    if not chosen:
        return ""
    klass = "wide" if wide else "figures"
    images = "\n".join(f'<img src="{html.escape(n)}" alt="{html.escape(n)}">' for n in chosen)
    return f'<div class="{klass}">\n{images}\n</div>'


def render_html(record: dict) -> str:
    """The report page of a JSON-ready results record (see the module docstring)."""
    files = record["files"]
    plots = record["plots"]
    title = f"caloml evaluation: {Path(files['generated']['path']).name} vs {Path(files['reference']['path']).name}"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">caloml {html.escape(record["caloml_version"])}, {html.escape(record["created_utc"])},'
        f" layout {html.escape(record['layout'])} ({html.escape(record['geometry'])}), seed {record['seed']}.</p>",
        "<h2>Summary</h2>",
        _summary_table(record),
        '<p class="note">Separation power: 1/2 Σ (h1 - h2)² / (h1 + h2) of unit-normalized histograms (0: identical,'
        " 1: disjoint); its noise floor is the value two samples of one distribution of these sizes reach by chance."
        " A column is flagged when its KS p-value survives the Holm-Bonferroni correction over all columns. A"
        " classifier AUC is significant when it exceeds 0.5 by more than 3 statistical errors.</p>",
        "<h2>Files</h2>",
        "<table>",
        _row(["file", "path", "showers", "energy range [GeV]", "theta range [rad]"], header=True),
    ]
    for role in ("generated", "reference"):
        f = files[role]
        energy = "-".join(f"{e:.4g}" for e in f["energy_range_gev"])
        theta = "-".join(f"{t:.3f}" for t in f["theta_range_rad"]) if f["theta_range_rad"] else "n/a"
        sections.append(
            f'<tr><td class="name">{role}</td><td>{html.escape(f["path"])}</td><td>{f["n_events"]}</td>'
            f"<td>{energy}</td><td>{theta}</td></tr>"
        )
    sections.append("</table>")
    conditions = record["conditions"]
    condition_text = "; ".join(
        f"{name}: KS {c['ks_statistic']:.3f} (p = {_fmt(c['ks_pvalue'])})" for name, c in conditions.items()
    )
    sections += [
        f'<p class="note">Conditions of the two files: {html.escape(condition_text)}. The classifiers see the'
        " conditions: generate for the reference's energies and angles, or a different condition distribution"
        " alone raises the AUC.</p>",
        _images(plots, "conditions"),
        "<h2>Observables</h2>",
        _observables_table(record),
        _images(plots, "hist_"),
        "<h3>Profiles and per-layer observables</h3>",
        _images(plots, "profile_"),
        _images(plots, "layers_", wide=True),
        "<h3>Relative error of the means in bins of the conditions</h3>",
        _images(plots, "energy_bins", wide=True),
        _images(plots, "angle_bins", wide=True),
        "<h3>Cell energy spectrum</h3>",
        f"<p>Separation power {_fmt(record['spectrum']['separation_power'])}; the noise floor of as many"
        f" independent cells is {_fmt(record['spectrum']['separation_power_noise_floor_independent_cells'])}, a"
        " lower bound: the cells of one shower are correlated, so the real noise is larger.</p>",
        _images(plots, "spectrum"),
        "<h2>Correlations</h2>",
        f"<p>Largest |difference| {_fmt(record['correlations']['max_abs_difference'])}, mean"
        f" {_fmt(record['correlations']['mean_abs_difference'])}.</p>",
        _images(plots, "correlations", wide=True),
        "<h2>Hit patterns</h2>" if record["hit_patterns"].get("available") else "",
        _images(plots, "hit_", wide=True),
        "<h2>Classifier two-sample test</h2>",
        _classifier_section(record),
        _images(plots, "classifier_roc"),
        "<h2>GAN-train / GAN-test</h2>",
        _gan_section(record),
        "<h2>Options</h2>",
        f"<pre>{html.escape(json.dumps(record['options'], indent=1))}</pre>",
    ]
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
