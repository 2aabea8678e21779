"""The generator evaluation of crystal-array files (``crystal-5x5``), per primary-energy point.

``python -m caloml.evaluate gen`` hands a pair of crystal files to :func:`evaluate_crystal` (detected from the
layout). Crystal data sets are simulated at fixed energies, so every comparison is made per energy point (the
distinct energies of the reference file; the generated file must hold the same ones, as
``python -m caloml.generate ... --like REFERENCE`` produces):

* the observables of :mod:`caloml.observables.crystal` (maximum crystal energy, E1/E9, E9/E21, E25 / E, number of
  hits) and the spectrum of all crystals' energies: histograms on the reference's range (outliers in the end bins)
  and their separation power;
* the classifier two-sample test (:mod:`caloml.evaluate.two_sample`) on the 25 crystal energies (as
  log10(E_cell / E + 1e-4)): its AUC (0.5 for indistinguishable samples).

Writes ``metrics.json`` (``per_energy``: every figure per point; ``summary``), ``summary.md`` and ``report.html``
(a table of the separation powers and AUC per energy point) and PNG histograms into the report directory,
installed atomically. See ``docs/vaewgan.md``.
"""

from __future__ import annotations

import html
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import caloml
from caloml.errors import CalomlError
from caloml.evaluate.two_sample import MIN_EVENTS, classifier_two_sample_test
from caloml.json_values import json_plain
from caloml.observables.crystal import CRYSTAL_OBSERVABLES, crystal_observables, observable_edges, separation_powers
from caloml.observables.metrics import separation_power
from caloml.report_directory import check_report_dir, report_dir

__all__ = ["SPECTRUM_NAME", "evaluate_crystal", "is_crystal_file", "read_crystal_file"]

#: The name of the all-crystals energy spectrum among the observables.
SPECTRUM_NAME = "cell_spectrum"
#: Relative tolerance of matching a generated energy to a reference energy point.
POINT_TOLERANCE = 1e-4
#: Most distinct reference energies (a continuous spectrum cannot be compared per point).
MAX_POINTS = 30
#: The aim for every observable's separation power (docs/vaewgan.md): trained energies, and interpolated ones.
AIM_TRAINED, AIM_INTERPOLATED = 0.03, 0.05


def is_crystal_file(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 file of the crystal layout (False for other layouts and unreadable files)."""
    from caloml.data.hdf5 import detect_layout, open_hdf5

    try:
        with open_hdf5(path) as handle:
            return detect_layout(handle) == "crystal"
    except CalomlError:
        return False


def read_crystal_file(path: str | Path, role: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(showers (N, n, n) GeV, energy (N,) GeV, description) of a crystal file; CalomlError for another layout."""
    from caloml.data.hdf5 import open_reader

    with open_reader(path) as reader:
        if reader.layout != "crystal":
            raise CalomlError(f"{path}: the {role} file is a {reader.layout} file, not a crystal-array file")
        data = reader.read(slice(0, reader.n_events))
        info = {"path": str(path), "n_events": int(reader.n_events), "geometry": reader.geometry_name}
        info["config"] = reader.attrs.get("caloml_config")
    return data["showers"].astype(np.float64), data["energy"].astype(np.float64).reshape(-1), info


def _cell_features(showers: np.ndarray, energy: np.ndarray) -> np.ndarray:
    flat = showers.reshape(len(showers), -1) / energy[:, None]
    return np.log10(np.maximum(flat, 0.0) + 1e-4).astype(np.float32)


def _spectrum(generated: np.ndarray, reference: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-binned histograms of the non-zero crystal energies (GeV) of both samples on the reference's range."""
    ref = reference[reference > 0]
    gen = generated[generated > 0]
    low, high = (float(ref.min()), float(ref.max())) if ref.size else (1e-3, 1.0)
    edges = np.geomspace(low, high * (1 + 1e-9), bins + 1)
    return (
        np.histogram(np.clip(gen, edges[0], edges[-1]), edges)[0],
        np.histogram(np.clip(ref, edges[0], edges[-1]), edges)[0],
        edges,
    )


def _points(energy_ref: np.ndarray, energy_gen: np.ndarray, generated: str) -> tuple[np.ndarray, np.ndarray]:
    """The reference's energy points and the point index of every generated shower (-1: none)."""
    points = np.unique(energy_ref.astype(np.float32)).astype(np.float64)
    if points.size > MAX_POINTS:
        raise CalomlError(
            f"the reference holds {points.size} distinct energies; the crystal evaluation compares at fixed energy "
            f"points (at most {MAX_POINTS}): simulate the reference with --energies"
        )
    distance = np.abs(energy_gen[:, None] - points[None, :]) / points[None, :]
    index = np.where(distance.min(axis=1) <= POINT_TOLERANCE, distance.argmin(axis=1), -1)
    if (index < 0).any():
        value = energy_gen[np.flatnonzero(index < 0)[0]]
        raise CalomlError(
            f"{generated}: a shower of {value:g} GeV is at none of the reference's energy points "
            f"({', '.join(f'{p:g}' for p in points)} GeV); generate with --like REFERENCE"
        )
    return points, index


def _plot(folder: Path, name: str, label: str, panels: list[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.9 * rows), squeeze=False)
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        edges = panel["edges"]
        for counts, style, text in ((panel["reference"], "k-", "reference"), (panel["generated"], "r--", "generated")):
            density = np.asarray(counts, float) / max(float(np.sum(counts)), 1.0)
            ax.step(edges[:-1], density, style, where="post", label=text)
        if panel.get("log"):
            ax.set_xscale("log")
        ax.set_title(f"{panel['energy']:g} GeV, SP {panel['separation_power']:.3f}", fontsize=9)
        ax.set_xlabel(label, fontsize=8)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    file = f"{name}.png"
    fig.savefig(folder / file, dpi=90)
    plt.close(fig)
    return file


def _markdown(record: dict[str, Any]) -> str:
    names = [*CRYSTAL_OBSERVABLES, SPECTRUM_NAME]
    labels = [CRYSTAL_OBSERVABLES[n][0] if n in CRYSTAL_OBSERVABLES else "cell spectrum" for n in names]
    lines = [
        "# Crystal generator evaluation",
        "",
        f"generated: `{record['files']['generated']['path']}`; reference: `{record['files']['reference']['path']}`;"
        f" caloml {record['caloml_version']}, seed {record['seed']}.",
        "",
        "| E (GeV) | " + " | ".join(labels) + " | classifier AUC |",
        "|---" * (len(names) + 2) + "|",
    ]
    for key, row in record["per_energy"].items():
        powers = " | ".join(f"{row['separation_power'][n]:.3f}" for n in names)
        auc = row["classifier"].get("auc")
        lines.append(f"| {key} | {powers} | {'n/a' if auc is None else f'{auc:.3f}'} |")
    return "\n".join(lines) + "\n"


def evaluate_crystal(generated: str | Path, reference: str | Path, out_dir: str | Path, **options: Any) -> dict:
    """Evaluate generated crystal showers against a reference file per energy point; write the report.

    Options (those of ``python -m caloml.evaluate gen`` that apply): ``seed``, ``repeats``, ``classifier``,
    ``classifier_events`` (most showers per file and point in the classifier test), ``bins``, ``overwrite``,
    ``progress``. Returns the content of ``metrics.json``.
    """
    seed = int(options.get("seed", 1))
    bins = int(options.get("bins", 40))
    repeats = int(options.get("repeats", 1))
    use_classifier = bool(options.get("classifier", True))
    classifier_events = int(options.get("classifier_events", 20000))
    overwrite = bool(options.get("overwrite", False))
    out = Path(out_dir)
    check_report_dir(out, overwrite, "evaluation report")
    start = time.perf_counter()
    showers_gen, energy_gen, info_gen = read_crystal_file(generated, "generated")
    showers_ref, energy_ref, info_ref = read_crystal_file(reference, "reference")
    if showers_gen.shape[1:] != showers_ref.shape[1:]:
        raise CalomlError(f"{generated}: showers {showers_gen.shape[1:]} but the reference has {showers_ref.shape[1:]}")
    points, index_gen = _points(energy_ref, energy_gen, str(generated))
    _, index_ref = _points(energy_ref, energy_ref, str(reference))
    n_cells = int(np.prod(showers_ref.shape[1:]))
    rng = np.random.default_rng(seed)
    per_energy: dict[str, Any] = {}
    panels: dict[str, list[dict[str, Any]]] = {name: [] for name in [*CRYSTAL_OBSERVABLES, SPECTRUM_NAME]}
    for k, point in enumerate(points):
        gen, ref = index_gen == k, index_ref == k
        if not gen.any():
            continue
        obs_gen = crystal_observables(showers_gen[gen], energy_gen[gen])
        obs_ref = crystal_observables(showers_ref[ref], energy_ref[ref])
        powers = separation_powers(obs_gen, obs_ref, bins, n_cells)
        for name, values in obs_ref.items():
            edges = observable_edges(name, values, bins, n_cells)
            counts = [
                np.histogram(np.clip(v[np.isfinite(v)], edges[0], edges[-1]), edges)[0] for v in (obs_gen[name], values)
            ]
            panels[name].append(
                {
                    "energy": point,
                    "edges": edges,
                    "generated": counts[0],
                    "reference": counts[1],
                    "separation_power": powers[name],
                }
            )
        spec_gen, spec_ref, spec_edges = _spectrum(showers_gen[gen], showers_ref[ref], bins)
        powers[SPECTRUM_NAME] = separation_power(spec_gen, spec_ref)
        panels[SPECTRUM_NAME].append(
            {"energy": point, "edges": spec_edges, "generated": spec_gen, "reference": spec_ref, "log": True,
             "separation_power": powers[SPECTRUM_NAME]}
        )  # fmt: skip
        classifier: dict[str, Any] = {"available": False}
        if not use_classifier:
            classifier["reason"] = "switched off (--no-classifier)"
        elif min(gen.sum(), ref.sum()) < MIN_EVENTS:
            classifier["reason"] = f"fewer than {MIN_EVENTS} showers at this energy in a file"
        else:
            pick_gen = rng.permutation(np.flatnonzero(gen))[:classifier_events]
            pick_ref = rng.permutation(np.flatnonzero(ref))[:classifier_events]
            result = classifier_two_sample_test(
                _cell_features(showers_gen[pick_gen], energy_gen[pick_gen]),
                _cell_features(showers_ref[pick_ref], energy_ref[pick_ref]),
                seed=seed + k,
                repeats=repeats,
            )
            classifier = {
                "available": True,
                **{key: result[key] for key in ("auc", "auc_std", "auc_stat_error", "jsd_nats")},
            }
        means = {name: [float(np.nanmean(obs_gen[name])), float(np.nanmean(obs_ref[name]))] for name in obs_ref}
        per_energy[f"{point:g}"] = {
            "energy_gev": point,
            "n_generated": int(gen.sum()),
            "n_reference": int(ref.sum()),
            "separation_power": powers,
            "means_generated_reference": means,
            "classifier": classifier,
        }
    if not per_energy:
        raise CalomlError(f"{generated}: no generated shower at the reference's energy points")
    largest = max(
        ((key, name, value) for key, row in per_energy.items() for name, value in row["separation_power"].items()),
        key=lambda item: item[2],
    )
    aucs = [row["classifier"]["auc"] for row in per_energy.values() if row["classifier"].get("available")]
    n_columns = sum(len(row["separation_power"]) for row in per_energy.values())
    record: dict[str, Any] = {
        "caloml_version": caloml.__version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "gen",
        "layout": "crystal",
        "geometry": info_ref["geometry"],
        "seed": seed,
        "options": {
            "bins": bins,
            "repeats": repeats,
            "classifier": use_classifier,
            "classifier_events": classifier_events,
        },
        "files": {"generated": info_gen, "reference": info_ref},
        "energy_points_gev": [float(p) for p in points],
        "per_energy": per_energy,
        "summary": {
            "n_columns": n_columns,
            "n_flagged_columns": sum(
                value >= AIM_TRAINED for row in per_energy.values() for value in row["separation_power"].values()
            ),
            "flag_rule": f"separation power >= {AIM_TRAINED}",
            "auc_low_level": float(np.mean(aucs)) if aucs else None,
            "auc_high_level": None,
            "largest_separation_power": largest[2],
            "largest_separation_power_text": f"{largest[2]:.3f} ({largest[1]} at {largest[0]} GeV)",
        },
    }
    record = json_plain(record)
    with report_dir(out, overwrite, "evaluation report") as tmp:
        plots = [
            _plot(tmp, name, CRYSTAL_OBSERVABLES[name][0] if name in CRYSTAL_OBSERVABLES else "crystal energy (GeV)", p)
            for name, p in panels.items()
        ]
        record["plots"] = plots
        record["timings_s"] = {"total": round(time.perf_counter() - start, 2)}
        (tmp / "metrics.json").write_text(json.dumps(record, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        (tmp / "summary.md").write_text(_markdown(record), encoding="utf-8")
        images = "".join(f'<p><img src="{file}"></p>' for file in plots)
        body = html.escape(_markdown(record))
        (tmp / "report.html").write_text(f"<html><body><pre>{body}</pre>{images}</body></html>\n", encoding="utf-8")
    if options.get("progress", True):
        print(f"evaluation written to {out} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return record
