"""``caloml COMMAND ...`` (also ``python -m caloml COMMAND ...``): every caloml command line under one name.

``caloml data simulate ...`` is ``python -m caloml.data simulate ...``, ``caloml train gan ...`` is ``python -m
caloml.train gan ...``, and so on for ``scan``, ``generate``, ``export``, ``evaluate`` and ``bench``: the rest of the
line goes unchanged to that command line's ``main`` (its own ``--help``, flags and errors). The command lines are
imported only when named, so that ``caloml --help`` answers without importing TensorFlow. A user error is one line
``caloml: error: ...`` with exit status 2, as everywhere. See ``docs/cli.md``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

import caloml
from caloml.errors import CalomlError, run_cli

__all__ = ["COMMAND_LINES", "cli", "main", "usage"]

#: Command -> (module with ``main(argv)``, one-line summary), in the order of the help.
COMMAND_LINES: dict[str, tuple[str, str]] = {
    "data": ("caloml.data.__main__", "simulate, convert, inspect, verify, validate, resample showers; prepare"),
    "train": ("caloml.train", "train a model with the shared trainer (gan, triforce, pointflow, pyramid, ...)"),
    "scan": ("caloml.scan", "hyperparameter scan with repeated seeds"),
    "generate": ("caloml.generate.__main__", "showers of a trained generator into an HDF5 file"),
    "export": ("caloml.export.__main__", "a trained model as a SavedModel for TF Serving"),
    "evaluate": (
        "caloml.evaluate.__main__",
        "generated showers against a reference; reconstruction; latent space; learning curve; bfloat16 sensitivity",
    ),
    "bench": ("caloml.bench.__main__", "throughput benchmarks on this machine"),
}


def usage() -> str:
    """The help text: the commands with their summaries."""
    width = max(map(len, COMMAND_LINES))
    lines = [
        "usage: caloml COMMAND [ARGS ...]   (or python -m caloml COMMAND ...)",
        "",
        "caloml: machine-learning calorimetry with TensorFlow and Keras.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMAND_LINES.items()),
        "",
        "caloml COMMAND --help shows the command's own help; caloml --version the version.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``caloml COMMAND ARGS...``: the command line ``COMMAND`` with ``ARGS``; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        print(f"caloml {caloml.__version__}")
        return 0
    name = argv[0]
    if name not in COMMAND_LINES:
        raise CalomlError(f"unknown command {name!r}; choose one of {', '.join(COMMAND_LINES)} (caloml --help)")
    module = importlib.import_module(COMMAND_LINES[name][0])
    return int(module.main(argv[1:]) or 0)


def cli(argv: Sequence[str] | None = None) -> NoReturn:
    """Console entry point (``caloml``): :func:`main` with one-line user errors, then exit."""
    run_cli(main, argv, process_exit=True)


if __name__ == "__main__":
    cli()
