"""``python -m caloml.train MODEL [options]``: train a model with the shared trainer.

Models are tasks (:class:`caloml.training.task.TrainingTask`) looked up by name in :data:`TASKS`; this module only
parses the command line, resolves the configuration (defaults < ``--preset`` < ``--config FILE.yaml`` < flags <
``--set section.key=value``) and calls :func:`caloml.training.trainer.train`. Examples::

    python -m caloml.train gan --preset quick --strategy mirrored      # the README's main job
    python -m caloml.train gan --preset paper-stage1 --run-dir runs/gan-stage1
    python -m caloml.train gan --preset paper --init-from runs/gan-stage1 --run-dir runs/gan-electron
    python -m caloml.train gan --particle photon --init-from runs/gan-electron --run-dir runs/gan-photon

A run directory that holds the same configuration is resumed from its last checkpoint (so rerunning an
interrupted command continues it); ``--print-config`` shows the resolved configuration without training.

Models that are not Keras networks (the baselines ``bdt``, ``linreg``, ``xgb``, :mod:`caloml.tasks.baselines`)
fit themselves: their task has a ``fit(config, overwrite=...)`` method returning the JSON summary, called instead of
the Keras trainer, with the same configuration, seed, run-directory and summary conventions. The trainer's
``--strategy``, ``--cpu-replicas``, ``--epochs``, ``--batch-size``, ``--steps-per-epoch``, ``--init-from``,
``--export``, ``--on-nonfinite`` and ``--deterministic`` do not apply to them and are refused with a one-line error.

See ``docs/training.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from caloml.cli_args import CommandLineParser, add_verbose_flag, non_negative_seed, positive_int
from caloml.errors import CalomlError, run_cli
from caloml.output_paths import check_output_path, write_errors_as_one_line
from caloml.quiet import import_tensorflow_quietly, set_verbose, verbose_requested
from caloml.training.config import config_to_dict, resolve_config

#: Task name -> "module:attribute" of a TrainingTask instance (imported only when chosen).
TASKS: dict[str, str] = {
    "gan": "caloml.tasks.gan3d:TASK",
    "triforce": "caloml.tasks.triforce:TASK",
    "bdt": "caloml.tasks.baselines:BDT_TASK",
    "linreg": "caloml.tasks.baselines:LINREG_TASK",
    "xgb": "caloml.tasks.baselines:XGB_TASK",
    "pointflow": "caloml.tasks.pointflow.task:TASK",
    "wgan": "caloml.tasks.crystal:WGAN_TASK",
    "vae": "caloml.tasks.crystal:VAE_TASK",
    "vaewgan": "caloml.tasks.crystal:VAEWGAN_TASK",
    "pyramid": "caloml.tasks.pyramid.task:TASK",
}

#: Task name -> "module:function" of its ``export_trained(model, config, run_dir) -> Path`` (``--export``); the
#: exporters sit above the tasks, so the command line hands the function to the trainer.
EXPORTERS: dict[str, str] = {
    "gan": "caloml.export.gan:export_trained",
    "triforce": "caloml.export.triforce:export_trained",
    "pointflow": "caloml.export.pointflow:export_trained",
    "wgan": "caloml.export.crystal:export_trained",
    "vae": "caloml.export.crystal:export_trained",
    "vaewgan": "caloml.export.crystal:export_trained",
    "pyramid": "caloml.export.pyramid:export_trained",
}


def _resolve(registry: dict[str, str], name: str, what: str) -> Any:
    if name not in registry:
        raise CalomlError(f"unknown {what} {name!r}; choose one of {', '.join(registry)}")
    module, attribute = registry[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def load_task(name: str) -> Any:
    """The task registered as ``name`` (CalomlError for an unknown one)."""
    return _resolve(TASKS, name, "model")


def load_exporter(name: str) -> Any:
    """The ``export_trained`` function registered for the task ``name`` (CalomlError when it has none)."""
    return _resolve(EXPORTERS, name, "model to export (--export)")


def exporter_for(task: Any, config: Any) -> Any:
    """The exporter to hand to the trainer: the task's when ``trainer.export`` is set, else None."""
    return load_exporter(task.name) if config.trainer.export else None


def build_parser(task: Any) -> argparse.ArgumentParser:
    """The parser of ``python -m caloml.train NAME``: the shared flags, then the task's own."""
    parser = CommandLineParser(prog=f"python -m caloml.train {task.name}", description=task.__doc__)
    shared = parser.add_argument_group("shared training options")
    shared.add_argument("--preset", choices=sorted(task.presets), help="named sizes (see --print-config)")
    shared.add_argument("--config", type=Path, help="YAML file {data,model,trainer,runtime} over the preset")
    shared.add_argument("--strategy", choices=["default", "one_device", "mirrored", "multi_worker"])
    shared.add_argument("--cpu-replicas", type=int, help="mirrored on a CPU: split it into N logical devices")
    shared.add_argument("--run-dir", help="run directory (default: runs/<model>-<particle>...)")
    shared.add_argument("--seed", type=non_negative_seed, help="seed of every random draw of the run")
    shared.add_argument("--epochs", type=positive_int)
    shared.add_argument("--batch-size", type=positive_int, help="global batch size over all replicas")
    shared.add_argument("--steps-per-epoch", type=positive_int)
    shared.add_argument("--init-from", help="initial weights: a run directory, .keras file or checkpoint")
    shared.add_argument("--export", action="store_true", default=None, help="export to saved_models/ at the end")
    shared.add_argument("--no-progress", action="store_true", help="one line per epoch instead of a progress bar")
    shared.add_argument("--deterministic", action="store_true", default=None, help="bit-identical reruns (slower)")
    shared.add_argument("--on-nonfinite", choices=["stop", "skip-batch"], help="on a NaN/inf loss (default stop)")
    shared.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="any config key")
    shared.add_argument("--overwrite", action="store_true", help="move an existing different run aside")
    shared.add_argument("--print-config", action="store_true", help="print the resolved configuration and stop")
    add_verbose_flag(shared)
    task.add_arguments(parser.add_argument_group(f"{task.name} options"))
    return parser


def shared_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The shared flags as dotted configuration keys (None: not given)."""
    return {
        "runtime.strategy": args.strategy,
        "runtime.cpu_replicas": args.cpu_replicas,
        "runtime.run_dir": args.run_dir,
        "runtime.seed": args.seed,
        "runtime.progress": False if args.no_progress else None,
        "runtime.deterministic": args.deterministic,
        "trainer.on_nonfinite": args.on_nonfinite,
        "trainer.epochs": args.epochs,
        "trainer.global_batch_size": args.batch_size,
        "trainer.steps_per_epoch": args.steps_per_epoch,
        "trainer.init_from": args.init_from,
        "trainer.export": args.export,
    }


#: Shared flags of the Keras trainer only (flag -> configuration key): a task that fits itself refuses them.
KERAS_TRAINER_FLAGS: dict[str, str] = {
    "--strategy": "runtime.strategy",
    "--cpu-replicas": "runtime.cpu_replicas",
    "--epochs": "trainer.epochs",
    "--batch-size": "trainer.global_batch_size",
    "--steps-per-epoch": "trainer.steps_per_epoch",
    "--init-from": "trainer.init_from",
    "--export": "trainer.export",
    "--on-nonfinite": "trainer.on_nonfinite",
    "--deterministic": "runtime.deterministic",  # the baselines are seeded and reproducible as they are
}


def fits_itself(task: Any) -> bool:
    """Whether ``task`` fits its model itself (``task.fit(config, overwrite=...)``) instead of the Keras trainer."""
    return callable(getattr(task, "fit", None))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, resolve the configuration, train; prints a JSON summary."""
    with write_errors_as_one_line():  # a full disk, an unwritable place: one line (caloml.output_paths)
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        names = ", ".join(TASKS)
        if argv and argv[0] in ("-h", "--help"):
            print(f"usage: python -m caloml.train MODEL [options]   (MODEL: {names}; MODEL --help for options)")
            return 0
        raise CalomlError(f"name the model to train first: python -m caloml.train MODEL ... (MODEL: {names})")
    if verbose_requested(argv):  # before the task's import of TensorFlow
        set_verbose()
    import_tensorflow_quietly(start_runtime=False)  # the tasks import TensorFlow; its runtime starts below
    task = load_task(argv[0])
    args = build_parser(task).parse_args(argv[1:])
    if args.run_dir:
        check_output_path(args.run_dir, directory=True)  # before any work: not under a file, writable
    flags = shared_flags(args)
    if fits_itself(task):
        given = [flag for flag, key in KERAS_TRAINER_FLAGS.items() if flags[key] is not None]
        if given:
            raise CalomlError(f"{given[0]} does not apply to {task.name}: it is fitted by its library, not trained by "
                              "the Keras trainer (see --help)")  # fmt: skip
        flags = {key: value for key, value in flags.items() if key not in KERAS_TRAINER_FLAGS.values()}
    config = resolve_config(
        task.config_class,
        preset=task.presets[args.preset] if args.preset else None,
        yaml_path=args.config,
        flags={**flags, **task.flags(args)},
        assignments=args.set,
    )
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0
    if fits_itself(task):
        import_tensorflow_quietly()  # its runtime reads the cached TFRecord data
        print(json.dumps(task.fit(config, overwrite=args.overwrite), indent=2))
        return 0

    strategies: list[Any] = []

    def create_strategy() -> None:
        # before TensorFlow's runtime starts: the CPU split and the multi-worker collectives must be set up first
        # (and imported lazily: this module parses its arguments without TensorFlow)
        from caloml.training.strategy import make_strategy

        strategies.append(make_strategy(config.runtime.strategy, cpu_replicas=config.runtime.cpu_replicas))
        if config.runtime.deterministic:
            from caloml.training.determinism import configure_deterministic_threads

            configure_deterministic_threads()

    import_tensorflow_quietly(configure=create_strategy)
    from caloml.training.trainer import describe, train  # TensorFlow: lazy, this module parses without it

    exporter = exporter_for(task, config)
    result = train(
        task, config, overwrite=args.overwrite, strategy=strategies[0] if strategies else None, exporter=exporter
    )
    print(describe(result))
    return 0


def cli() -> None:
    """Console entry point with one-line user errors."""
    run_cli(main, process_exit=True)


if __name__ == "__main__":
    cli()
