"""``python -m caloml.bench [WHAT ...]``: benchmarks that print one ``name: value unit`` line per figure.

WHAT is ``sim`` (simulator throughput), ``filtered`` (the e-vs-pi charged pions with and without the filtered
simulation, CPU seconds per passing pion), ``features`` (the Triforce expert features from the cells, events/s),
``pipeline`` (TFRecord input pipeline against a plain h5py loop and the bytes per shower of each encoding), ``gan``
(3DGAN generator throughput on the CPU: graph, XLA, bfloat16; about 30 minutes on 2 cores with the default batches),
``reco`` (Triforce networks and baselines, events per second at batch 1 and 1000 on the CPU), ``pointflow``
(CaloPointFlow shower sampling at batch 1, 100 and 1000 on the CPU, with the share of each sampling stage),
``pyramid`` (Calorimeter Pyramid sampling per stage at batch 1, 100 and 1000), ``crystal`` (a trained crystal
``wgan``, ``vae`` or ``vaewgan`` given with ``--model``, at batch 1 and 10,000; not part of ``all``), ``onnx`` (ONNX
Runtime against TensorFlow for each model with an ONNX export, batch 1 and 64) or ``all`` (the default). The
machine is printed first, so that a figure can be quoted with where it was measured. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from caloml.bench.features import benchmark_features
from caloml.bench.simulator import benchmark_filtered_simulation, benchmark_simulator
from caloml.cli_args import (
    CommandLineParser,
    add_verbose_flag,
    apply_verbosity,
    non_negative_seed,
    positive_float,
    positive_int,
)
from caloml.data.tfrecord import convert_to_tfrecords
from caloml.errors import run_cli
from caloml.quiet import import_tensorflow_quietly
from caloml.sim.run import SimulationRequest, simulate_file

#: The benchmarks that ``all`` runs, in the order they run (``crystal`` needs a trained model and is not among them).
BENCHMARKS_IN_ALL = ("sim", "filtered", "features", "pipeline", "gan", "reco", "pointflow", "pyramid", "onnx")


#: Every benchmark name WHAT can take.
BENCHMARK_NAMES = (*BENCHMARKS_IN_ALL, "crystal", "all")


def _benchmark_name(text: str) -> str:
    if text not in BENCHMARK_NAMES:
        raise argparse.ArgumentTypeError(f"unknown benchmark {text!r}; choose from {', '.join(BENCHMARK_NAMES)}")
    return text


def _unit(name: str) -> str:
    """The unit of a figure from its name's ending."""
    if "gflop_per_shower" in name:
        return "GFLOP"
    if "gflop_per_cpu_s" in name:
        return "GFLOP/CPU-s"
    if "showers_per_cpu_s" in name:
        return "showers/CPU-s"
    if "gflop_per_s" in name:
        return "GFLOP/s"
    if "_cpu_s_per_" in name:
        return "CPU-s"
    if "_ms_per_" in name:
        return "ms"
    if name.endswith("_events_per_s"):
        return "events/s"
    for ending, unit in (("_per_s", "showers/s"), ("_bytes", "bytes"), ("_per_shower", "bytes"), ("_ms", "ms")):
        if name.endswith(ending) or (ending == "_per_s" and "_per_s_" in name):
            return unit
    if "speedup" in name or "ratio" in name or name.endswith("_x"):
        return "x"
    return ""


def _int_list(text: str) -> list[int]:
    """``"1,64,1024"`` -> [1, 64, 1024] (positive integers)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"need positive integers, got {text!r}")
    return values


def _mode_list(text: str) -> list[str]:
    """``"graph,bf16"`` -> ["graph", "bf16"] (modes of the gan benchmark)."""
    modes = [part.strip() for part in text.split(",") if part.strip()]
    known = ("graph", "xla", "bf16", "bf16_xla", "train", "bf16_train")
    if not modes or any(mode not in known for mode in modes):
        raise argparse.ArgumentTypeError(f"modes are {', '.join(known)}; got {text!r}")
    return modes


def _network_list(text: str) -> list[str]:
    """``"dnn,cnn"`` -> ["dnn", "cnn"] (networks of the reco benchmark)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    known = ("dnn", "cnn", "googlenet")
    if not names or any(name not in known for name in names):
        raise argparse.ArgumentTypeError(f"networks are {', '.join(known)}; got {text!r}")
    return names


def print_figures(figures: Mapping[str, float | str], flush: bool = False) -> None:
    """One ``name: value unit`` line per figure (a text value, such as why a figure was skipped, as it is)."""
    for name, value in figures.items():
        if isinstance(value, str):
            print(f"{name}: {value}", flush=flush)
        else:
            print(f"{name}: {value:.4g} {_unit(name)}".rstrip(), flush=flush)


def machine_description() -> str:
    """CPU model, core count and Python version of this machine, one line."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandLineParser(prog="python -m caloml.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what",
        nargs="*",
        # checked per name by its type, not by ``choices``: recent argparse (3.11.7 here) checks an empty or default
        # list against ``choices`` as one value and refuses it. No WHAT means all.
        type=_benchmark_name,
        metavar="WHAT",
        help=f"one or more of {', '.join(BENCHMARK_NAMES)} (default: all)",
    )
    parser.add_argument("-n", "--events", type=int, default=1024, help="showers per measurement (sim, pipeline)")
    parser.add_argument("--seed", type=non_negative_seed, default=1)
    gan = parser.add_argument_group("gan, pointflow")
    gan.add_argument(
        "--model",
        help="run directory or .keras file of a GAN3D, PointFlowVAE or CalorimeterPyramid (default: random weights)",
    )
    gan.add_argument(
        "--batches",
        type=_int_list,
        default=None,
        help="batch sizes (default gan 1,64,1024; pointflow, pyramid 1,100,1000)",
    )
    gan.add_argument(
        "--modes", type=_mode_list, default=None, help="graph,xla,bf16,bf16_xla,train,bf16_train (default: all)"
    )
    gan.add_argument("--repeats", type=positive_int, default=3, help="timed calls per batch size (default 3)")
    gan.add_argument(
        "--max-call-seconds",
        type=positive_float,
        default=300.0,
        help="skip a batch size whose call is predicted to take longer (default 300)",
    )
    reco = parser.add_argument_group("reco (also uses --repeats, --max-call-seconds)")
    reco.add_argument("--reco-batches", type=_int_list, default=[1, 1000], help="batch sizes (default 1,1000)")
    reco.add_argument("--networks", type=_network_list, default=None, help="dnn,cnn,googlenet (default: all three)")
    reco.add_argument("--no-baselines", action="store_true", help="skip the BDT, XGBoost and linear regression")
    pointflow = parser.add_argument_group("pointflow (also uses --model, --batches, --repeats, --max-call-seconds)")
    pointflow.add_argument("--n-points", type=positive_int, default=10_000, help="flow points per shower (10000)")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    apply_verbosity(args)
    what = set(BENCHMARKS_IN_ALL) if not args.what or "all" in args.what else set(args.what)
    print(f"machine: {machine_description()}")
    if "sim" in what:
        print_figures(benchmark_simulator(args.events, args.seed))
    if "filtered" in what:
        print_figures(benchmark_filtered_simulation(2 * args.events, args.seed))
    if "features" in what:
        print_figures(benchmark_features(min(args.events, 1000), args.seed))
    if "pipeline" in what:
        # The benchmark modules below import TensorFlow: each is imported only when asked for, after the arguments
        # were parsed and TensorFlow's start-up lines hidden.
        import_tensorflow_quietly()
        from caloml.bench.pipeline import benchmark_pipeline

        with tempfile.TemporaryDirectory() as tmp:
            h5 = Path(tmp) / "lcd-gen-electron.h5"
            simulate_file(SimulationRequest("lcd-gen", "electron", args.events, args.seed), h5, progress=False)
            records = Path(tmp) / "records"
            convert_to_tfrecords([h5], records)
            print_figures(benchmark_pipeline(h5, records))
    if "gan" in what:
        import_tensorflow_quietly()
        from caloml.bench.gan import MODES, benchmark_gan

        benchmark_gan(  # minutes: each figure is printed as soon as it is measured
            args.model,
            batches=args.batches or [1, 64, 1024],
            repeats=args.repeats,
            seed=args.seed,
            modes=args.modes or MODES,
            max_call_seconds=args.max_call_seconds,
            report=lambda name, value: print_figures({name: value}, flush=True),
        )
    if "reco" in what:
        import_tensorflow_quietly()
        from caloml.bench.reco import NETWORKS, benchmark_reco

        benchmark_reco(  # each figure is printed as soon as it is measured
            batches=args.reco_batches,
            repeats=args.repeats,
            seed=args.seed,
            max_call_seconds=args.max_call_seconds,
            networks=args.networks or tuple(NETWORKS),
            baselines=not args.no_baselines,
            report=lambda name, value: print_figures({name: value}, flush=True),
        )
    if "pointflow" in what:
        import_tensorflow_quietly()
        from caloml.bench.pointflow import benchmark_pointflow

        benchmark_pointflow(  # each figure is printed as soon as it is measured
            args.model,
            batches=args.batches or [1, 100, 1000],
            n_points=args.n_points,
            repeats=args.repeats,
            seed=args.seed,
            max_call_seconds=args.max_call_seconds,
            report=lambda name, value: print_figures({name: value}, flush=True),
        )
    if "crystal" in what:
        import_tensorflow_quietly()
        from caloml.bench.crystal import benchmark_crystal

        benchmark_crystal(
            args.model or "",
            batches=args.batches or [1, 10000],
            repeats=args.repeats,
            seed=args.seed,
            report=lambda name, value: print_figures({name: value}, flush=True),
        )
    if "pyramid" in what:
        import_tensorflow_quietly()
        from caloml.bench.pyramid import benchmark_pyramid

        benchmark_pyramid(  # each figure is printed as soon as it is measured
            args.model,
            batches=args.batches or [1, 100, 1000],
            repeats=args.repeats,
            seed=args.seed,
            report=lambda name, value: print_figures({name: value}, flush=True),
            max_call_seconds=args.max_call_seconds,
        )
    if "onnx" in what:
        import_tensorflow_quietly()
        from caloml.bench.onnx import benchmark_onnx

        benchmark_onnx(
            batches=args.batches or [1, 64],
            repeats=args.repeats,
            seed=args.seed,
            report=lambda name, value: print_figures({name: value}, flush=True),
        )
    return 0


def cli() -> None:
    """Console entry point."""
    run_cli(main, process_exit=True)


if __name__ == "__main__":
    cli()
