"""``python -m caloml.bench [WHAT ...]``: benchmarks that print one ``name: value unit`` line per figure.

WHAT is ``sim`` (simulator throughput), ``pipeline`` (TFRecord input pipeline against a plain h5py loop and
the bytes per shower of each encoding) or ``all`` (the default). The machine is printed first, so that a
figure can be quoted with where it was measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path

from caloml.errors import run_cli


def _unit(name: str) -> str:
    """The unit of a figure from its name's ending."""
    if "_ms_per_" in name:
        return "ms"
    for ending, unit in (("_per_s", "showers/s"), ("_bytes", "bytes"), ("_per_shower", "bytes"), ("_ms", "ms")):
        if name.endswith(ending) or (ending == "_per_s" and "_per_s_" in name):
            return unit
    if "speedup" in name or "ratio" in name or name.endswith("_x"):
        return "x"
    return ""


def print_figures(figures: dict[str, float]) -> None:
    """One ``name: value unit`` line per figure."""
    for name, value in figures.items():
        print(f"{name}: {value:.4g} {_unit(name)}".rstrip())


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
    parser = argparse.ArgumentParser(prog="python -m caloml.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="*", choices=["sim", "pipeline", "all"], default=["all"])
    parser.add_argument("-n", "--events", type=int, default=1024, help="showers per measurement")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    what = {"sim", "pipeline"} if "all" in args.what else set(args.what)
    print(f"machine: {machine_description()}")
    if "sim" in what:
        from caloml.bench.simulator import benchmark_simulator

        print_figures(benchmark_simulator(args.events, args.seed))
    if "pipeline" in what:
        from caloml.data.__main__ import import_tensorflow_quietly

        import_tensorflow_quietly()
        from caloml.bench.pipeline import benchmark_pipeline
        from caloml.data.tfrecord import convert_to_tfrecords
        from caloml.sim.run import SimulationRequest, simulate_file

        with tempfile.TemporaryDirectory() as tmp:
            h5 = Path(tmp) / "lcd-gen-electron.h5"
            simulate_file(SimulationRequest("lcd-gen", "electron", args.events, args.seed), h5, progress=False)
            records = Path(tmp) / "records"
            convert_to_tfrecords([h5], records)
            print_figures(benchmark_pipeline(h5, records))
    return 0


def cli() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    cli()
