"""The validation report's plots: one function per measurement, drawing the measured figures against their targets.

Figures are drawn on matplotlib's object API (no pyplot): the report neither changes a notebook's backend nor keeps
figures alive in pyplot's registry. Each plotter takes the report folder, the measurement's figures and its plot
data, and returns the PNG names it wrote. See ``docs/simulator.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from caloml.geometry import LCD_HIT_THRESHOLD_GEV, TUNGSTEN
from caloml.sim.validation_targets import target_of
from caloml.units import MEV_PER_GEV

__all__ = [
    "plot_angle",
    "plot_calochallenge",
    "plot_gamma_pi0",
    "plot_lateral",
    "plot_longitudinal",
    "plot_occupancy",
    "plot_pion_ratio",
]

#: Critical energy of tungsten (GeV): the homogeneous reference T = ln(E/Ec) - 0.858 (Review of Particle Physics).
TUNGSTEN_CRITICAL_ENERGY_GEV = TUNGSTEN.critical_energy_mev / MEV_PER_GEV
#: CALICE Si-W resolution (arXiv:0811.2354), drawn as a reference: stochastic and constant terms.
CALICE_STOCHASTIC, CALICE_CONSTANT = 0.166, 0.011
#: Ratio edges of the HCAL/ECAL histograms; ratios outside are drawn in the first or last bin.
RATIO_EDGES = np.logspace(-5, 4, 73)
#: The HCAL/ECAL cut of the e vs pi+- target.
RATIO_CUT = 0.1


def _save(fig: Figure, folder: Path, name: str) -> str:
    fig.savefig(folder / name, dpi=110)
    return name


def _subplots(nrows: int, ncols: int, **kwargs: Any) -> tuple[Figure, Any]:
    fig = Figure(figsize=kwargs.pop("figsize"), layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _figure(ncols: int = 1, width: float = 6.4, height: float = 4.6, **kwargs: Any) -> tuple[Figure, Any]:
    return _subplots(1, ncols, figsize=(width, height), **kwargs)


def plot_longitudinal(folder: Path, lon: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    energies = np.asarray(lon["energies_gev"])
    log_e = np.log10(energies)
    grid = np.logspace(log_e.min() - 0.1, log_e.max() + 0.1, 100)
    names = []

    fig, ax = _figure()
    colours = colormaps["viridis"](np.linspace(0, 0.9, energies.size))
    for energy, profile, colour in zip(energies, extra["profiles_per_x0"], colours, strict=True):
        ax.step(extra["layer_centres_x0"], profile, where="mid", color=colour, label=f"{energy:g} GeV")
    ax.set(
        yscale="log",
        xlabel="depth t [X0]",
        ylabel="mean calibrated (1/E) dE/dt [1/X0]",
        title=f"Electron longitudinal profiles, CLIC ECAL ({lon['n']} showers per energy)",
    )
    ax.legend(title="electron energy")
    names.append(_save(fig, folder, "longitudinal_profiles.png"))

    fig, ax = _figure()
    for key, label, marker in (
        ("depth_max_x0", "depth of maximum T", "o"),
        ("centre_of_gravity_x0", "centre of gravity <t>", "s"),
    ):
        values = np.asarray(lon[key])
        slope, intercept = np.polyfit(log_e, values, 1)
        points = ax.plot(energies, values, marker, label=f"{label}")[0]
        ax.plot(
            grid,
            slope * np.log10(grid) + intercept,
            "-",
            color=points.get_color(),
            label=f"fit: {slope:.2f} X0 per decade",
        )
    ax.plot(
        grid,
        np.log(grid / TUNGSTEN_CRITICAL_ENERGY_GEV) - 0.858,
        "k--",
        lw=1,
        label="homogeneous W: ln(E/Ec) - 0.858",
    )
    ax.set(xscale="log", xlabel="electron energy E [GeV]", ylabel="depth [X0]", title="Shower depth vs energy")
    ax.legend()
    names.append(_save(fig, folder, "shower_depth_vs_energy.png"))

    fig, ax = _figure()
    ax.plot(energies, lon["sampling_fraction"], "o-", label="simulation (visible ECAL sum / E)")
    sf = target_of("longitudinal.sampling_fraction_100gev")
    ax.axhspan(sf.low, sf.high, color="tab:green", alpha=0.15, label=f"accepted at 100 GeV ({sf.tolerance()})")
    ax.axhline(0.02, color="k", ls="--", lw=1, label="CLIC data ≈ 0.02")
    ax.set(
        xscale="log", xlabel="electron energy E [GeV]", ylabel="ECAL sampling fraction", title="ECAL sampling fraction"
    )
    ax.legend()
    names.append(_save(fig, folder, "sampling_fraction.png"))

    fig, ax = _figure()
    containment = np.asarray(lon["containment"])
    slope, intercept = np.polyfit(log_e, containment, 1)
    ax.plot(energies, containment, "o", label="calibrated ECAL sum / E")
    ax.plot(grid, slope * np.log10(grid) + intercept, "-", label=f"fit: {slope:+.4f} per decade")
    floor = target_of("longitudinal.containment_500gev")
    ax.axhline(floor.low, color="tab:red", ls="--", lw=1, label=f"target at 500 GeV: {floor.tolerance()}")
    ax.set(
        xscale="log",
        xlabel="electron energy E [GeV]",
        ylabel="longitudinal containment",
        title="Longitudinal containment (leakage grows with E)",
    )
    ax.legend()
    names.append(_save(fig, folder, "longitudinal_containment.png"))

    fig, ax = _figure()
    a, b = lon["stochastic_term"], lon["constant_term"]
    ax.plot(energies, lon["resolution"], "o", label=f"simulation ({lon['n']} showers per energy)")
    ax.plot(grid, np.hypot(a / np.sqrt(grid), b), "-", label=f"fit: {100 * a:.1f}%/√E ⊕ {100 * b:.2f}% (E in GeV)")
    ax.plot(
        grid,
        np.hypot(CALICE_STOCHASTIC / np.sqrt(grid), CALICE_CONSTANT),
        "k--",
        lw=1,
        label=f"CALICE: {100 * CALICE_STOCHASTIC:.1f}%/√E ⊕ {100 * CALICE_CONSTANT:.1f}%",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="electron energy E [GeV]",
        ylabel="σ/E of the calibrated ECAL sum",
        title="Energy resolution",
    )
    ax.legend()
    names.append(_save(fig, folder, "energy_resolution.png"))
    return names


def plot_lateral(folder: Path, lateral: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    fig, ax = _figure()
    ax.plot(extra["radii_rm"], extra["containment"], "-", label="simulation, 100 GeV e-")
    ax.plot([1, 2], [lateral["within_1_rm"], lateral["within_2_rm"]], "o", label="measured at 1 and 2 RM")
    accepted = [target_of(f"lateral_containment.within_{k}_rm") for k in (1, 2)]
    for k, target in enumerate(accepted, start=1):
        ax.plot([k, k], [target.low, target.high], "_-", color="tab:red", ms=14, label=None if k > 1 else "accepted")
    ax.set(
        xlabel="radius from the shower axis [Moliere radii of the layer]",
        ylabel="share of the ECAL energy within the radius",
        title=f"Lateral containment (RM of the thin layers {lateral['moliere_radius_thin_layers_mm']:.1f} mm)",
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower right")
    return [_save(fig, folder, "lateral_containment.png")]


def plot_angle(folder: Path, angle: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    theta = np.asarray(angle["theta_rad"])
    mean = np.asarray(angle["mtheta_mean_rad"])
    spread = np.asarray(angle["mtheta_std_rad"])
    fig, (top, bottom) = _subplots(2, 1, figsize=(6.4, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    top.errorbar(theta, mean, yerr=spread, fmt="o", capsize=3, label="mean ± std of the measured angle")
    span = np.array([theta.min() - 0.05, theta.max() + 0.05])
    top.plot(span, span, "k--", lw=1, label="diagonal (measured = true)")
    top.set(ylabel="measured angle [rad]", title="Measured incidence angle (100 GeV e-, image algorithm)")
    top.legend()
    bottom.errorbar(theta, mean - theta, yerr=spread, fmt="o", capsize=3)
    bottom.axhline(0, color="k", ls="--", lw=1)
    bottom.set(xlabel="true θ [rad]", ylabel="measured - true [rad]")
    return [_save(fig, folder, "angle_response.png")]


def plot_occupancy(folder: Path, occupancy: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    names = []
    edges = np.asarray(extra["spectrum_edges_gev"])
    counts = np.asarray(extra["cells_per_event"])
    fig, ax = _figure()
    ax.stairs(counts, edges, label="simulation, 100 GeV e-")
    ax.axvline(LCD_HIT_THRESHOLD_GEV, color="tab:red", ls="--", lw=1, label="3DGAN hit threshold 3e-4 GeV")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="ECAL cell energy (visible) [GeV]",
        ylabel="cells per event per bin",
        title=f"ECAL cell-energy spectrum ({len(edges) - 1} log bins)",
    )
    ax.legend()
    names.append(_save(fig, folder, "cell_spectrum.png"))

    fig, ax = _figure()
    ax.plot(extra["thresholds_gev"], extra["share_above"], "o-", ms=3, label="simulation, 100 GeV e-")
    occ = target_of("occupancy.nonzero_share")
    ax.axhspan(occ.low, occ.high, color="tab:green", alpha=0.15, label=f"accepted non-zero share ({occ.tolerance()})")
    ax.axhline(occupancy["nonzero_share"], color="k", ls=":", lw=1, label="non-zero share")
    ax.axvline(LCD_HIT_THRESHOLD_GEV, color="tab:red", ls="--", lw=1, label="3e-4 GeV")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="threshold [GeV]",
        ylabel="share of the 51 x 51 x 25 cells above the threshold",
        title="Sparsity",
    )
    ax.legend()
    names.append(_save(fig, folder, "sparsity.png"))
    return names


def plot_pion_ratio(folder: Path, pions: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    bins = pions["energy_bins_gev"]
    fig, axes = _figure(ncols=len(bins), width=4.2 * len(bins), height=4.4, sharey=True)
    axes = np.atleast_1d(axes)
    low_edge, high_edge = RATIO_EDGES[0], RATIO_EDGES[-1]
    for i, (ax, (low, high)) in enumerate(zip(axes, bins, strict=True)):
        for particle, label, share_key in (
            ("electron", "e-", "electron_share_below_0.1"),
            ("chpi", "π±", "chpi_share_below_0.1"),
        ):
            ratio = np.clip(extra[particle][i], low_edge * 1.0001, high_edge * 0.9999)
            counts, _ = np.histogram(ratio, bins=RATIO_EDGES)
            ax.stairs(
                counts / max(1, ratio.size),
                RATIO_EDGES,
                label=f"{label} ({ratio.size} events, {100 * pions[share_key][i]:.1f}% < 0.1)",
            )
        ax.axvline(RATIO_CUT, color="k", ls="--", lw=1, label="cut HCAL/ECAL = 0.1")
        ax.set(xscale="log", yscale="log", xlabel="HCAL/ECAL energy ratio", title=f"{low:g}-{high:g} GeV")
        ax.legend(fontsize="small")
    axes[0].set_ylabel("fraction of events per bin")
    fig.suptitle(f"HCAL/ECAL energy ratio (ratios outside {low_edge:g}-{high_edge:g} drawn in the edge bins)")
    return [_save(fig, folder, "hcal_ecal_ratio.png")]


def plot_gamma_pi0(folder: Path, gamma: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    fig, ax = _figure()
    ax.plot(gamma["energies_gev"], gamma["width_separation_power"], "o-", label="transverse width, γ vs π0")
    low, high = target_of("gamma_pi0.separation_10gev"), target_of("gamma_pi0.max_separation_from_100gev")
    ax.axhline(low.low, color="tab:green", ls="--", lw=1, label=f"target at 10 GeV: {low.tolerance()}")
    ax.axhline(high.high, color="tab:red", ls="--", lw=1, label=f"target at ≥ 100 GeV: {high.tolerance()}")
    ax.set(
        xscale="log",
        ylim=(0, 1),
        xlabel="primary energy [GeV]",
        ylabel="separation power",
        title="Photon vs π0: separation power of the shower width",
    )
    ax.legend()
    return [_save(fig, folder, "gamma_pi0_separation.png")]


def plot_calochallenge(folder: Path, cc: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    names = []
    fig, ax = _figure()
    edges = np.asarray(cc["histogram_edges"])
    ax.stairs(cc["histogram_counts"], edges, label=f"simulation ({cc['n_events']} e-, 1 GeV-1 TeV)")
    if cc["etot_over_einc_mode"] is not None:
        ax.axvline(cc["etot_over_einc_mode"], color="k", ls=":", lw=1, label=f"mode {cc['etot_over_einc_mode']:.2f}")
    mode = target_of("calochallenge.etot_over_einc_mode")
    ax.axvspan(mode.low, mode.high, color="tab:green", alpha=0.15, label=f"accepted mode ({mode.tolerance()})")
    ax.set(
        xlim=(0.5, 1.5),
        xlabel="E_tot / E_inc (after the 15.15 keV threshold)",
        ylabel="events per bin of 0.02",
        title="CaloChallenge dataset 2: total over incident energy",
    )
    ax.legend()
    names.append(_save(fig, folder, "calochallenge_etot_einc.png"))

    fig, (left, right) = _figure(ncols=2, width=11.0, height=4.4)
    for (low, high), layers, radial, count in zip(
        cc["energy_ranges_gev"],
        cc["layer_energy_over_einc"],
        cc["radial_energy_over_einc"],
        cc["events_per_range"],
        strict=True,
    ):
        if layers is None:
            continue
        label = f"{low:g}-{high:g} GeV ({count} events)"
        left.step(cc["layer_centres_x0"], layers, where="mid", label=label)
        right.step(cc["radial_centres_mm"], radial, where="mid", label=label)
    left.set(
        yscale="log",
        xlabel="depth of the voxel layer [X0]",
        ylabel="mean layer energy / E_inc",
        title="Energy per layer",
    )
    left.legend()
    right.set(
        yscale="log",
        xlabel="radius [mm]",
        ylabel="mean energy per radial bin (4.65 mm) / E_inc",
        title="Radial profile",
    )
    right.legend()
    names.append(_save(fig, folder, "calochallenge_profiles.png"))
    return names
