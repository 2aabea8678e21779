"""Hit-pattern validation of generated CaloChallenge showers (datasets 2 and 3): which cells are hit, not how much.

A cell is hit from the readout threshold on (15.15 keV, the official evaluation's). :func:`compare_hit_patterns`
streams both files once and compares:

* the Pearson correlation matrices of hit indicators at the layer level (a layer is hit when any of its cells is;
  L x L) and the layer x radius level (a (layer, radius) cell is hit when any of its angular cells is; L R x L R),
  with the mean and maximum absolute difference over the entries defined in both files (an indicator that never
  or always fires has no correlation; such entries are counted, not compared);
* the mean number of hits per layer and per radius, with their mean relative error (over the layers / radii the
  reference hits);
* the distribution of the number of hits per shower, with its separation power;
* the double-hit rate, ``1 - placed / requested``, for a generator that records how many hits it asked for and how
  many distinct cells it filled (the root attributes ``caloml_hits_requested`` and ``caloml_hits_placed``); a file
  without them has no rate (a cell file cannot show two hits in one cell).

:func:`draw_hit_pattern_plots` draws the matrices side by side (generated, reference, difference) and the
profiles. See ``docs/pyramid.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from caloml.data.calochallenge import CaloChallengeReader
from caloml.data.hdf5 import open_hdf5, open_reader
from caloml.geometry import CALOCHALLENGE_2
from caloml.observables.metrics import separation_power

__all__ = ["HitPatternSums", "compare_hit_patterns", "draw_hit_pattern_plots", "read_hit_patterns"]

#: Root attributes of the double-hit bookkeeping (written by ``python -m caloml.generate pyramid``).
HITS_REQUESTED_ATTR = "caloml_hits_requested"
HITS_PLACED_ATTR = "caloml_hits_placed"


@dataclass
class HitPatternSums:
    """Streaming sums of one file's hit indicators (float64), for the Pearson matrices and the profiles."""

    grid_shape: tuple[int, int, int]
    n_events: int
    layer_sum: np.ndarray
    layer_products: np.ndarray
    cell_sum: np.ndarray
    cell_products: np.ndarray
    hits_per_layer: np.ndarray
    hits_per_radius: np.ndarray
    n_hits: np.ndarray
    hits_requested: int | None
    hits_placed: int | None

    def pearson(self, level: str) -> np.ndarray:
        """The Pearson matrix of ``layer`` or ``layer_radius`` indicators (NaN where an indicator is constant)."""
        total, products = (
            (self.layer_sum, self.layer_products) if level == "layer" else (self.cell_sum, self.cell_products)
        )
        n = max(self.n_events, 1)
        mean = total / n
        covariance = products / n - np.outer(mean, mean)
        std = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            matrix = covariance / np.outer(std, std)
        matrix[np.outer(std, std) < 1e-12] = np.nan
        return np.clip(matrix, -1.0, 1.0)


def read_hit_patterns(path: str | Path, threshold_gev: float, chunk_events: int = 256) -> HitPatternSums | None:
    """The sums of a CaloChallenge file of a cylinder (layer, angle, radius); None for another layout."""
    with open_reader(path, chunk_events=chunk_events) as reader:
        if not isinstance(reader, CaloChallengeReader) or len(reader.dataset.shape) != 3:
            return None
        n_layers, n_alpha, n_radius = (int(n) for n in reader.dataset.shape)
        sums = HitPatternSums(
            (n_layers, n_alpha, n_radius),
            0,
            np.zeros(n_layers),
            np.zeros((n_layers, n_layers)),
            np.zeros(n_layers * n_radius),
            np.zeros((n_layers * n_radius, n_layers * n_radius)),
            np.zeros(n_layers),
            np.zeros(n_radius),
            np.zeros(0),
            None,
            None,
        )
        counts = []
        for chunk in reader.iter_chunks():
            hits = chunk["showers"] >= threshold_gev
            layer_radius = hits.any(axis=2).reshape(len(hits), -1).astype(np.float64)
            layer = hits.any(axis=(2, 3)).astype(np.float64)
            sums.n_events += len(hits)
            sums.layer_sum += layer.sum(axis=0)
            sums.layer_products += layer.T @ layer
            sums.cell_sum += layer_radius.sum(axis=0)
            sums.cell_products += layer_radius.T @ layer_radius
            sums.hits_per_layer += hits.sum(axis=(2, 3)).sum(axis=0)
            sums.hits_per_radius += hits.sum(axis=(1, 2)).sum(axis=0)
            counts.append(hits.reshape(len(hits), -1).sum(axis=1))
        sums.n_hits = np.concatenate(counts) if counts else np.zeros(0)
    with open_hdf5(path) as file:
        if HITS_REQUESTED_ATTR in file.attrs and HITS_PLACED_ATTR in file.attrs:
            sums.hits_requested = int(file.attrs[HITS_REQUESTED_ATTR])
            sums.hits_placed = int(file.attrs[HITS_PLACED_ATTR])
    return sums


def _matrix_difference(gen: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    difference = np.abs(gen - ref)
    defined = np.isfinite(difference)
    return {
        "mean_abs_difference": float(difference[defined].mean()) if defined.any() else None,
        "max_abs_difference": float(difference[defined].max()) if defined.any() else None,
        "entries": int(difference.size),
        "undefined_entries": int((~defined).sum()),
    }


def _relative_error(gen: np.ndarray, ref: np.ndarray) -> float | None:
    used = ref > 0
    return float(np.mean(np.abs(gen[used] - ref[used]) / ref[used])) if used.any() else None


def compare_hit_patterns(
    generated: str | Path, reference: str | Path, *, threshold_gev: float | None = None, chunk_events: int = 256
) -> tuple[dict[str, Any], tuple[HitPatternSums, HitPatternSums] | None]:
    """The JSON record of the hit-pattern comparison and the two files' sums (None, with ``available: False``,
    for files that are not CaloChallenge cylinders)."""
    threshold = float(CALOCHALLENGE_2.threshold_gev if threshold_gev is None else threshold_gev)
    gen = read_hit_patterns(generated, threshold, chunk_events)
    ref = read_hit_patterns(reference, threshold, chunk_events)
    if gen is None or ref is None or gen.grid_shape != ref.grid_shape:
        return {"available": False, "reason": "hit patterns need CaloChallenge cylinder files of one grid"}, None
    top = int(max(gen.n_hits.max(initial=0), ref.n_hits.max(initial=0)))
    edges = np.unique(np.linspace(0, top + 1, 51).round())
    counts_gen = np.histogram(gen.n_hits, edges)[0]
    counts_ref = np.histogram(ref.n_hits, edges)[0]
    per_layer = (gen.hits_per_layer / max(gen.n_events, 1), ref.hits_per_layer / max(ref.n_events, 1))
    per_radius = (gen.hits_per_radius / max(gen.n_events, 1), ref.hits_per_radius / max(ref.n_events, 1))
    double = None
    if gen.hits_requested is not None and gen.hits_placed is not None and gen.hits_requested > 0:
        double = 1.0 - gen.hits_placed / gen.hits_requested
    record = {
        "available": True,
        "threshold_gev": threshold,
        "pearson_layer": _matrix_difference(gen.pearson("layer"), ref.pearson("layer")),
        "pearson_layer_radius": _matrix_difference(gen.pearson("layer_radius"), ref.pearson("layer_radius")),
        "hits_per_layer": {
            "generated": per_layer[0],
            "reference": per_layer[1],
            "mean_relative_error": _relative_error(*per_layer),
        },
        "hits_per_radius": {
            "generated": per_radius[0],
            "reference": per_radius[1],
            "mean_relative_error": _relative_error(*per_radius),
        },
        "n_hits": {
            "edges": edges,
            "generated": counts_gen,
            "reference": counts_ref,
            "mean_generated": float(gen.n_hits.mean()) if gen.n_hits.size else None,
            "mean_reference": float(ref.n_hits.mean()) if ref.n_hits.size else None,
            "separation_power": separation_power(counts_gen, counts_ref),
        },
        "double_hit_rate": double,
        "double_hit_note": None if double is not None else "the generated file does not record requested hits",
    }
    return record, (gen, ref)


def draw_hit_pattern_plots(
    folder: Path, record: dict[str, Any], sums: tuple[HitPatternSums, HitPatternSums]
) -> list[str]:
    """PNG files of the comparison in ``folder``: ``hit_pearson_layer.png``, ``hit_pearson_layer_radius.png``
    (generated, reference, difference side by side) and ``hit_profiles.png``; returns their names."""
    from matplotlib.figure import Figure

    gen, ref = sums
    names = []
    for level, title in (("layer", "layers"), ("layer_radius", "layer x radius cells")):
        fig = Figure(figsize=(15, 4.6))
        matrices = (gen.pearson(level), ref.pearson(level))
        panels = (*matrices, matrices[0] - matrices[1])
        stats = record[f"pearson_{level}"]
        labels = (
            "generated",
            "reference",
            f"difference (mean |d| {stats['mean_abs_difference']:.3g}, max {stats['max_abs_difference']:.3g})",
        )
        for i, (matrix, label) in enumerate(zip(panels, labels, strict=True)):
            ax = fig.add_subplot(1, 3, i + 1)
            image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
            ax.set_title(f"{label}", fontsize=9)
            ax.set_xlabel(title)
            fig.colorbar(image, ax=ax, fraction=0.046)
        fig.suptitle(f"Pearson correlation of hit indicators, {title}")
        fig.tight_layout()
        name = f"hit_pearson_{level}.png"
        fig.savefig(folder / name, dpi=90)
        names.append(name)
    fig = Figure(figsize=(15, 4.2))
    profiles = (
        ("hits_per_layer", "layer", "mean hits per shower"),
        ("hits_per_radius", "radial bin", "mean hits per shower"),
    )
    for i, (key, xlabel, ylabel) in enumerate(profiles):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.step(np.arange(len(record[key]["reference"])), record[key]["reference"], where="mid", label="reference")
        ax.step(np.arange(len(record[key]["generated"])), record[key]["generated"], where="mid", label="generated")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"mean relative error {record[key]['mean_relative_error']:.3g}", fontsize=9)
        ax.legend()
    ax = fig.add_subplot(1, 3, 3)
    edges = np.asarray(record["n_hits"]["edges"])
    for role in ("reference", "generated"):
        counts = np.asarray(record["n_hits"][role], dtype=float)
        ax.stairs(counts / max(counts.sum(), 1.0), edges, label=role)
    ax.set_xlabel("hits per shower")
    ax.set_ylabel("fraction of showers")
    ax.set_title(f"separation power {record['n_hits']['separation_power']:.3g}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "hit_profiles.png", dpi=90)
    names.append("hit_profiles.png")
    return names
