"""Latent-space physics of the crystal VAE and VAE + WGAN: ``python -m caloml.evaluate latent``.

For a trained model with an encoder (``vae`` or ``vaewgan``) and a reference crystal file (simulated showers at
fixed energies, including energies the model never saw):

* **Mutual information** I(x; z) between showers and latents under the encoder, estimated as in He et al.,
  "Lagging inference networks and posterior collapse in variational autoencoders" (arXiv:1901.05534):
  I = E_x[KL(q(z|x) || p(z))] - KL(q(z) || p(z)), computed as the Monte Carlo average over showers x_i and one draw
  z_i ~ q(z|x_i) of log q(z_i|x_i) - log q(z_i), with the aggregate posterior q(z_i) = mean_j q(z_i|x_j) over the
  same N showers. It is bounded by ln N; reported in nats, for all showers and per energy point.
* **KL per latent dimension**, the mean over showers of KL(q(z_d|x) || N(0, 1)): the dimensions that carry
  information (an unused, collapsed dimension has KL about 0).
* **t-SNE** (scikit-learn) of the latent means, coloured by the primary energy.
* **Interpolation**: the mean and spread of the crystal observables against energy, simulated and generated,
  across the energy points; those outside the model's training grid (e.g. 2 GeV) are marked.

Writes ``latent.json`` and PNG plots into the output directory, atomically. See ``docs/vaewgan.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp

from caloml.cli_args import non_negative_seed, output_directory, positive_int
from caloml.errors import CalomlError
from caloml.evaluate.crystal import read_crystal_file
from caloml.generate.crystal import add_model_parser, model_class
from caloml.generate.trained_model import load_trained_model, resolve_model_file
from caloml.json_values import json_plain
from caloml.observables.crystal import CRYSTAL_OBSERVABLES, crystal_observables
from caloml.quiet import import_tensorflow_quietly
from caloml.report_directory import check_report_dir, report_dir

__all__ = ["add_latent_parser", "gaussian_mutual_information", "kl_per_dimension", "latent_report", "run_latent"]


def _log_normal(z: np.ndarray, mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """log N(z | mean, exp(log_var)) summed over the last axis (broadcasting)."""
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var), axis=-1)


def gaussian_mutual_information(mean: np.ndarray, log_var: np.ndarray, rng: np.random.Generator) -> float:
    """The estimate of I(x; z) in nats (module docstring) from encoder means and log-variances (N, d)."""
    n = len(mean)
    if n < 2:
        return float("nan")
    z = mean + np.exp(0.5 * log_var) * rng.standard_normal(mean.shape)
    log_q_own = _log_normal(z, mean, log_var)
    log_q_all = np.empty(n)
    for start in range(0, n, 256):  # (block, N) densities at a time
        block = _log_normal(z[start : start + 256, None, :], mean[None, :, :], log_var[None, :, :])
        log_q_all[start : start + 256] = logsumexp(block, axis=1) - np.log(n)
    return float(np.mean(log_q_own - log_q_all))


def kl_per_dimension(mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """Mean over showers of KL(q(z_d | x) || N(0, 1)) per latent dimension, shape (d,), nats."""
    return np.mean(0.5 * (mean**2 + np.exp(log_var) - 1.0 - log_var), axis=0)


def _trained_points(run_config: dict[str, Any]) -> list[float] | None:
    points = (run_config.get("data") or {}).get("energy_points_gev")
    return [float(p) for p in points] if isinstance(points, list) else None


def latent_report(
    model: Any,
    showers: np.ndarray,
    energy: np.ndarray,
    out_dir: Path,
    *,
    seed: int = 1,
    mi_events: int = 2000,
    tsne_events: int = 3000,
    trained_points: list[float] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the latent-space report of ``model`` on reference showers (N, n, n) GeV with energies (N,) GeV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    if not hasattr(model, "encode"):
        raise CalomlError(f"a {type(model).__name__} has no encoder: the latent-space report needs a vae or vaewgan")
    out = Path(out_dir)
    check_report_dir(out, overwrite, "latent-space report")
    low, high = model.accepted_range()
    inside = (energy >= low) & (energy <= high)
    if not inside.any():
        raise CalomlError("no reference shower lies in the model's trained energy range")
    showers, energy = showers[inside], energy[inside]
    rng = np.random.default_rng(seed)
    mean, log_var = model.encode(showers.astype(np.float32), energy)
    points = np.unique(energy.astype(np.float32)).astype(np.float64)
    pick = rng.permutation(len(energy))[:mi_events]
    mutual = {
        "all": gaussian_mutual_information(mean[pick], log_var[pick], rng),
        "bound_ln_n": float(np.log(pick.size)),
    }
    per_point: dict[str, float] = {}
    for point in points:
        rows = np.flatnonzero(np.isclose(energy, point, rtol=1e-5))[:mi_events]
        per_point[f"{point:g}"] = gaussian_mutual_information(mean[rows], log_var[rows], rng)
    kl = kl_per_dimension(mean, log_var)
    order = np.argsort(kl)[::-1]

    generated = model.generate(energy, seed=seed)
    obs_ref, obs_gen = crystal_observables(showers, energy), crystal_observables(generated, energy)
    interpolation: dict[str, Any] = {}
    for name in ("e9_over_e21", "n_hits", "e1_over_e9", "max_cell_gev"):
        table: list[list[float]] = []
        for point in points:
            sel = np.isclose(energy, point, rtol=1e-5)
            table.append(
                [float(np.nanmean(obs_ref[name][sel])), float(np.nanstd(obs_ref[name][sel])),
                 float(np.nanmean(obs_gen[name][sel])), float(np.nanstd(obs_gen[name][sel]))]
            )  # fmt: skip
        interpolation[name] = table

    with report_dir(out, overwrite, "latent-space report") as tmp:
        plots = []
        tsne_pick = rng.permutation(len(energy))[:tsne_events]
        embedding = TSNE(n_components=2, random_state=seed, init="pca", perplexity=30.0).fit_transform(mean[tsne_pick])
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        sc = ax.scatter(embedding[:, 0], embedding[:, 1], c=energy[tsne_pick], s=3, cmap="viridis")
        fig.colorbar(sc, ax=ax, label="primary energy (GeV)")
        ax.set_title(f"t-SNE of the latent means ({tsne_pick.size} showers)")
        fig.tight_layout()
        fig.savefig(tmp / "latent_tsne.png", dpi=90)
        plt.close(fig)
        plots.append("latent_tsne.png")

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.bar(np.arange(kl.size), kl)
        ax.set_xlabel("latent dimension")
        ax.set_ylabel("mean KL (nats)")
        fig.tight_layout()
        fig.savefig(tmp / "latent_kl_per_dimension.png", dpi=90)
        plt.close(fig)
        plots.append("latent_kl_per_dimension.png")

        unseen = [p for p in points if trained_points is not None and not np.isclose(trained_points, p).any()]
        fig, axes = plt.subplots(1, len(interpolation), figsize=(4 * len(interpolation), 3.5))
        for ax, (name, table) in zip(axes, interpolation.items(), strict=True):
            values = np.asarray(table)
            ax.errorbar(points, values[:, 0], values[:, 1], fmt="ko", label="simulated", capsize=2)
            ax.errorbar(points * 1.02, values[:, 2], values[:, 3], fmt="rs", label="generated", capsize=2, mfc="none")
            for point in unseen:
                ax.axvline(point, color="grey", ls=":", label="not trained" if point == unseen[0] else None)
            ax.set_xlabel("primary energy (GeV)")
            label, unit = CRYSTAL_OBSERVABLES[name]
            ax.set_ylabel(f"{label} ({unit})" if unit else label)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(tmp / "interpolation.png", dpi=90)
        plt.close(fig)
        plots.append("interpolation.png")

        report = json_plain(
            {
                "model": type(model).__name__,
                "seed": seed,
                "n_showers": len(energy),
                "energy_points_gev": points.tolist(),
                "trained_points_gev": trained_points,
                "mutual_information_nats": {**mutual, "per_energy": per_point},
                "mutual_information_method": (
                    "E_x[log q(z|x) - log q(z)], z ~ q(z|x) once per shower, q(z) the mean of q(z|x_j) over the same "
                    f"{pick.size} showers (He et al., arXiv:1901.05534); bounded by ln N"
                ),
                "kl_per_dimension_nats": kl.tolist(),
                "dimensions_by_kl": order.tolist(),
                "interpolation": {
                    "columns": ["simulated mean", "simulated std", "generated mean", "generated std"],
                    "rows_energy_gev": points.tolist(),
                    **interpolation,
                },
                "plots": plots,
            }
        )
        (tmp / "latent.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return report


def add_latent_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``latent``: the latent-space physics of a crystal vae or vaewgan."""
    parser = add_model_parser(
        subparsers,
        "latent",
        "latent-space physics of a crystal vae or vaewgan: mutual information, KL per dimension, t-SNE",
        "Encode a reference crystal file with a trained vae or vaewgan: mutual information between showers and "
        "latents, KL per latent dimension, a t-SNE of the latent means coloured by energy, and the crystal "
        "observables against energy across the held-out points. Writes latent.json and PNG plots.",
        models="vae or vaewgan",
    )
    parser.add_argument("--reference", required=True, type=Path, metavar="FILE.h5", help="crystal showers")
    parser.add_argument("--out", required=True, type=output_directory, metavar="DIR", help="report directory")
    parser.add_argument("--seed", type=non_negative_seed, default=1, help="seed of every random draw (default 1)")
    parser.add_argument("--mi-events", type=positive_int, default=2000, help="showers in the MI estimate")
    parser.add_argument("--tsne-events", type=positive_int, default=3000, help="showers in the t-SNE")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    return parser


def run_latent(args: argparse.Namespace) -> int:
    """Load the model and the reference, write the report, print the mutual information."""
    resolve_model_file(args.model)
    check_report_dir(Path(args.out), args.overwrite, "latent-space report")
    showers, energy, _ = read_crystal_file(args.reference, "reference")
    import_tensorflow_quietly()
    from caloml.models.crystal_vae import VariationalShowerModel

    model_class("vae")  # registers the crystal model classes
    trained = load_trained_model(args.model, VariationalShowerModel)
    report = latent_report(
        trained.model,
        showers,
        energy,
        args.out,
        seed=args.seed,
        mi_events=args.mi_events,
        tsne_events=args.tsne_events,
        trained_points=_trained_points(trained.run_config),
        overwrite=args.overwrite,
    )
    mi = report["mutual_information_nats"]
    print(
        f"mutual information {mi['all']:.3f} nats (bound {mi['bound_ln_n']:.2f}); dimensions by KL "
        f"{report['dimensions_by_kl']}; report: {args.out}"
    )
    return 0
