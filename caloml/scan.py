"""``python -m caloml.scan MODEL [scan options] [training options]``: a hyperparameter scan with repeated seeds.

Examples::

    python -m caloml.scan triforce --grid model.hidden_units=128,512,2048 --grid model.learning_rate=1e-4,4e-4 \\
        --repeats 3 --run-root runs/scan-dnn --preset quick --arch dnn --task gamma-vs-pi0
    python -m caloml.scan triforce --grid-preset paper-cnn --points 12 --repeats 3 --run-root runs/scan-cnn
    python -m caloml.scan triforce --grid-preset paper-dnn --run-root runs/scan-dnn --list   # the plan only

Every option that is not the scan's goes to ``python -m caloml.train MODEL`` (``--preset``, ``--config``,
``--set``, ``--epochs``, the model's own flags...) and is resolved exactly as there; ``--seed`` is the base seed
(repeat r uses seed + r) and ``--run-dir`` is replaced by ``--run-root``. A scanned key may not also be given
another value by a flag or ``--set``. Rerunning the same command continues an interrupted scan (finished runs are
read, not retrained). See :mod:`caloml.training.scan` for the outputs and the grid presets.

The baselines ``bdt``, ``linreg`` and ``xgb`` fit themselves with their library (:func:`caloml.train.fits_itself`):
each run is ``task.fit(config)``, as ``python -m caloml.train`` does, and its value is read from its
``summary.json`` (the BDT's validation log-loss, a regression's validation relative RMS error; see
:func:`caloml.training.scan.baseline_selection`). The Keras trainer's flags (``--epochs``, ``--strategy``...) are
refused for them, as by ``caloml.train``. Example::

    python -m caloml.scan xgb --particle photon --grid model.max_depth=2,3,4 --repeats 2 --run-root runs/scan-xgb

See ``docs/training.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

import caloml.train as train_cli
from caloml.cli_args import CommandLineParser, non_negative_seed, output_directory, positive_int
from caloml.errors import CalomlError, run_cli
from caloml.output_paths import write_errors_as_one_line
from caloml.quiet import import_tensorflow_quietly, set_verbose, verbose_requested
from caloml.training.config import resolve_config
from caloml.training.scan import (
    GRID_PRESETS,
    ScanPoint,
    grid_points,
    parse_grid_axis,
    preset_points,
    run_scan,
    sample_points,
)

__all__ = ["build_scan_parser", "cli", "main"]


def build_scan_parser(model: str) -> argparse.ArgumentParser:
    """The scan's own options (the rest of the command line goes to the training parser)."""
    parser = CommandLineParser(
        prog=f"python -m caloml.scan {model}",
        description="Train MODEL at every grid point with repeated seeds; summarize the selection metric.",
        epilog="Other options are training options of python -m caloml.train MODEL (see its --help).",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2,...", help="one scan axis (repeatable)"
    )
    parser.add_argument("--grid-preset", choices=sorted(GRID_PRESETS), help="a named grid of the paper")
    parser.add_argument("--points", type=positive_int, help="random subset of this many grid points (seeded)")
    parser.add_argument("--sample-seed", type=non_negative_seed, help="seed of the subset (default: the base seed)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="seeds per point (default 3)")
    parser.add_argument(
        "--run-root", required=True, type=output_directory, help="directory of the scan's runs and summary"
    )
    parser.add_argument("--list", action="store_true", help="print the points and run directories, train nothing")
    return parser


def _explicit_values(flags: Mapping[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    explicit = {k: v for k, v in flags.items() if v is not None}
    for assignment in assignments:
        key, _, text = assignment.partition("=")
        try:
            explicit[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            explicit[key.strip()] = text
    return explicit


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, plan the scan, train or read every run, write the summary."""
    with write_errors_as_one_line():  # a full disk, an unwritable place: one line (caloml.output_paths)
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            print(__doc__)
            return 0
        raise CalomlError("name the model to scan first: python -m caloml.scan MODEL --grid ... --run-root DIR")
    model = argv[0]
    args, rest = build_scan_parser(model).parse_known_args(argv[1:])
    if verbose_requested(rest):  # a training option (python -m caloml.train's --verbose)
        set_verbose()
    import_tensorflow_quietly(start_runtime=False)
    task = train_cli.load_task(model)
    self_fitting = train_cli.fits_itself(task)
    train_args = train_cli.build_parser(task).parse_args(rest)
    if train_args.run_dir:
        raise CalomlError("--run-dir: a scan puts each run under --run-root/<point>/seed-<seed>")
    if train_args.print_config:
        raise CalomlError("--print-config: use --list to see the scan's runs")
    if args.grid and args.grid_preset:
        raise CalomlError("give either --grid axes or --grid-preset, not both")
    if not args.grid and not args.grid_preset:
        raise CalomlError("nothing to scan: give --grid SECTION.KEY=V1,V2,... or --grid-preset NAME")

    flags = train_cli.shared_flags(train_args)
    if self_fitting:  # as python -m caloml.train does for these models
        given = [flag for flag, key in train_cli.KERAS_TRAINER_FLAGS.items() if flags[key] is not None]
        if given:
            raise CalomlError(f"{given[0]} does not apply to {model}: it is fitted by its library, not trained by the"
                              " Keras trainer")  # fmt: skip
        flags = {key: value for key, value in flags.items() if key not in train_cli.KERAS_TRAINER_FLAGS.values()}
    flags = {**flags, **task.flags(train_args)}
    preset = task.presets[train_args.preset] if train_args.preset else None

    def resolve(values: Mapping[str, Any], seed: int, run_dir: Path) -> Any:
        return resolve_config(
            task.config_class,
            preset=preset,
            yaml_path=train_args.config,
            flags={**flags, **values, "runtime.seed": seed, "runtime.run_dir": str(run_dir)},
            assignments=[a for a in train_args.set if a.partition("=")[0].strip() not in values],
        )

    base_config = resolve_config(
        task.config_class, preset=preset, yaml_path=train_args.config, flags=flags, assignments=train_args.set
    )
    base_seed = int(base_config.runtime.seed)
    sample_seed = base_seed if args.sample_seed is None else args.sample_seed
    points: list[ScanPoint]
    if args.grid_preset:
        points = preset_points(args.grid_preset, args.points, sample_seed)
    else:
        axes: dict[str, tuple[Any, ...]] = {}
        for text in args.grid:
            key, values = parse_grid_axis(text)
            if key in axes:
                raise CalomlError(f"--grid {key}: the key is scanned twice")
            axes[key] = values
        points = grid_points(axes)
        if args.points is not None:
            points = sample_points(points, args.points, sample_seed)
    explicit = _explicit_values(flags, train_args.set)
    for key in points[0].values:
        if key.startswith("runtime."):
            raise CalomlError(f"--grid {key}: runtime keys cannot be scanned (the scan sets the seed and run dir)")
        if key in explicit and any(p.values[key] != explicit[key] for p in points):
            raise CalomlError(f"{key} is scanned and also set to {explicit[key]!r} by a flag or --set; drop one")
    for point in points:  # unknown keys and wrong types are reported before anything trains
        resolve(point.values, base_seed, args.run_root)
    if args.list:
        for point in points:
            for r in range(args.repeats):
                print(f"{args.run_root / point.name / f'seed-{base_seed + r}'}  {dict(point.values)}")
        print(f"{len(points)} points x {args.repeats} repeats = {len(points) * args.repeats} runs")
        return 0

    provenance = {
        "grid_preset": args.grid_preset,
        "points_requested": args.points,
        "sample_seed": sample_seed,
        "command": ["python", "-m", "caloml.scan", *argv],
    }
    if self_fitting:
        import_tensorflow_quietly()  # the baselines read the cached TFRecord data

        def fit_run(config: Any) -> None:
            task.fit(config, overwrite=train_args.overwrite)

        run_scan(model=model, points=points, repeats=args.repeats, base_seed=base_seed, run_root=args.run_root,
                 resolve=resolve, train_run=fit_run, provenance=provenance, self_fitting=True)  # fmt: skip
        return 0

    strategies: list[Any] = []

    def create_strategy() -> None:
        # TensorFlow: imported lazily, this module parses its arguments without it
        from caloml.training.strategy import make_strategy

        runtime = base_config.runtime
        strategies.append(make_strategy(runtime.strategy, cpu_replicas=runtime.cpu_replicas))

    import_tensorflow_quietly(configure=create_strategy)
    if not strategies:  # TensorFlow was started before (a notebook, the tests): one strategy for every run
        create_strategy()
    import keras  # lazy, as make_strategy above

    from caloml.training.trainer import train

    def train_run(config: Any) -> None:
        exporter = train_cli.exporter_for(task, config)
        train(task, config, overwrite=train_args.overwrite, strategy=strategies[0], exporter=exporter)
        keras.backend.clear_session()

    run_scan(
        model=model,
        points=points,
        repeats=args.repeats,
        base_seed=base_seed,
        run_root=args.run_root,
        resolve=resolve,
        train_run=train_run,
        provenance=provenance,
    )
    return 0


def cli() -> None:
    """Console entry point with one-line user errors."""
    run_cli(main, process_exit=True)


if __name__ == "__main__":
    cli()
