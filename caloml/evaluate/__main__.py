"""The evaluation command line: ``python -m caloml.evaluate COMMAND ...``.

Commands: ``gen --generated FILE.h5 --reference FILE.h5 --out DIR [--repeats N] [--seed S] [--no-classifier] ...``
(generated showers against a reference), ``reco`` (the reconstruction networks, from
:mod:`caloml.evaluate.reconstruction`) and ``latent`` (the latent space of a crystal ``vae`` or ``vaewgan``, from
:mod:`caloml.evaluate.latent_space`) and ``curve`` (the learning curve of 3DGAN runs from their checkpoints, from
:mod:`caloml.evaluate.learning_curve`) and ``precision`` (how a 3DGAN generator reacts to bfloat16, from
:mod:`caloml.evaluate.precision_sensitivity`). A command is one :meth:`caloml.cli_commands.CommandRegistry.register`
call on :data:`COMMANDS`; user errors are one line (exit status 2). See ``docs/evaluation.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from caloml.cli_args import non_negative_seed, output_directory, positive_float, positive_int
from caloml.cli_commands import CommandRegistry
from caloml.evaluate.generative import evaluate_generated
from caloml.evaluate.latent_space import add_latent_parser, run_latent
from caloml.evaluate.learning_curve import add_curve_parser, run_curve
from caloml.evaluate.precision_sensitivity import add_precision_parser, run_precision
from caloml.evaluate.reconstruction import add_reco_parser, run_reco

__all__ = ["COMMANDS", "add_gen_parser", "cli", "main", "run_gen"]


COMMANDS = CommandRegistry(
    "python -m caloml.evaluate",
    "caloml evaluation: compare generated showers with a reference (gen); learning curves of 3DGAN runs (curve);"
    " a 3DGAN generator's bfloat16 sensitivity (precision).",
)


def add_gen_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``gen``: generated showers against a reference file."""
    parser = subparsers.add_parser(
        "gen",
        help="compare a file of generated showers with a reference file of the same layout",
        description=(
            "Compare generated showers with reference showers (LCD or CaloChallenge layout): histograms and"
            " separation power of the physics observables, KS tests, relative errors of the means per energy (and"
            " angle) bin, correlation matrices, a classifier two-sample test (AUC, Jensen-Shannon estimate) and"
            " GAN-train / GAN-test. Writes report.html, metrics.json and PNG plots into --out."
        ),
    )
    parser.add_argument("--generated", required=True, type=Path, metavar="FILE.h5", help="generated showers")
    parser.add_argument("--reference", required=True, type=Path, metavar="FILE.h5", help="reference showers")
    parser.add_argument("--out", required=True, type=output_directory, metavar="DIR", help="report directory")
    parser.add_argument("--seed", type=non_negative_seed, default=1, help="seed of every random draw (default 1)")
    parser.add_argument(
        "--repeats", type=positive_int, default=1, help="classifier tests per input, for the spread (default 1)"
    )
    parser.add_argument("--no-classifier", action="store_true", help="skip the classifier two-sample test")
    parser.add_argument(
        "--classifier-events",
        type=positive_int,
        default=20000,
        metavar="N",
        help="most showers per file in the classifier test (default 20000; bounds the memory)",
    )
    parser.add_argument("--bins", type=positive_int, default=40, help="histogram bins per observable (default 40)")
    binning = parser.add_mutually_exclusive_group()
    binning.add_argument(
        "--energy-bin-width",
        type=positive_float,
        metavar="GEV",
        help="incident-energy bins of this width (default: 5 GeV for LCD files)",
    )
    binning.add_argument(
        "--log-energy-bins",
        type=positive_int,
        metavar="N",
        help="N logarithmic incident-energy bins (default for CaloChallenge files: 12)",
    )
    parser.add_argument(
        "--angle-bin-width", type=positive_float, default=0.1, metavar="RAD", help="angle bins (default 0.1 rad)"
    )
    parser.add_argument(
        "--background",
        type=Path,
        metavar="FILE.h5",
        help="showers of another particle (e.g. simulated charged pions) for GAN-train / GAN-test",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run_gen(args: argparse.Namespace) -> int:
    """Run the generator evaluation and print the summary."""
    metrics = evaluate_generated(
        args.generated,
        args.reference,
        args.out,
        seed=args.seed,
        repeats=args.repeats,
        classifier=not args.no_classifier,
        classifier_events=args.classifier_events,
        bins=args.bins,
        energy_bin_width_gev=args.energy_bin_width,
        log_energy_bins=args.log_energy_bins,
        angle_bin_width_rad=args.angle_bin_width,
        background=None if args.background is None else str(args.background),
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    summary = metrics["summary"]
    auc = ", ".join(
        f"{kind} AUC {summary[f'auc_{kind}']:.3f}"
        for kind in ("low_level", "high_level")
        if summary[f"auc_{kind}"] is not None
    )
    print(
        f"{summary['n_flagged_columns']} of {summary['n_columns']} observable columns flagged"
        f"{'; ' + auc if auc else ''}; largest separation power {summary['largest_separation_power_text']};"
        f" report: {Path(args.out) / 'report.html'}"
    )
    return 0


COMMANDS.register("gen", add_gen_parser, run_gen)
COMMANDS.register("reco", add_reco_parser, run_reco)
COMMANDS.register("latent", add_latent_parser, run_latent)
COMMANDS.register("curve", add_curve_parser, run_curve)
COMMANDS.register("precision", add_precision_parser, run_precision)

main = COMMANDS.main
cli = COMMANDS.cli

if __name__ == "__main__":
    cli()
