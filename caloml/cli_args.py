"""Argument types shared by caloml's command lines (argparse ``type=`` callables). See ``docs/cli.md``.

Most types report a bad value as an argparse usage error. The checks at the edge (:func:`non_negative_seed`,
:func:`output_file`, :func:`output_directory`, :func:`check_memory`) raise :class:`caloml.errors.CalomlError`
instead, which argparse does not catch: the command line reports it as its usual single ``caloml: error:`` line
before any work starts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NoReturn

import numpy as np

from caloml.errors import CalomlError
from caloml.output_paths import check_output_path
from caloml.quiet import set_verbose

#: Seeds are whole numbers in [0, 2**32): NumPy's and TensorFlow's generators take every one of them.
MAX_SEED = 2**32 - 1


class CommandLineParser(argparse.ArgumentParser):
    """argparse's parser with caloml's error form: a usage error (an unknown flag, a value of the wrong type, a
    missing argument) is one line ``caloml: error: PROG: MESSAGE (PROG --help shows the usage)`` on stderr and exit
    status 2, like every other caloml error, instead of argparse's usage block followed by its own error line.
    Sub-command parsers made by ``add_subparsers`` are of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"caloml: error: {self.prog}: {message} ({self.prog} --help shows the usage)\n")


def positive_int(text: str) -> int:
    """An integer of at least 1 (argparse reports anything else as a usage error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def positive_float(text: str) -> float:
    """A number greater than 0 (NaN and anything else is an argparse usage error)."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def parse_angle(text: str) -> float:
    """An angle in radians from ``"1.5708"`` or ``"90deg"``."""
    value = text.strip().lower()
    try:
        if value.endswith("deg"):
            return float(np.deg2rad(float(value[:-3])))
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an angle: {text!r} (radians, or degrees as 90deg)") from None


def add_verbose_flag(parser: argparse._ActionsContainer) -> None:
    """Add ``--verbose`` (show TensorFlow's own log lines, hidden by default; see :mod:`caloml.quiet`)."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # a sub-command's default must not override the main parser's value
        help="show TensorFlow's start-up and log lines (hidden by default)",
    )


def apply_verbosity(args: argparse.Namespace) -> None:
    """Make the process verbose when ``args`` asks for it (``--verbose``); call before TensorFlow is imported."""
    if getattr(args, "verbose", False):
        set_verbose(True)


# -- checks at the edge (CalomlError: one line, before any work) -------------------------------------------------------
def non_negative_seed(text: str) -> int:
    """A seed: a whole number from 0 to :data:`MAX_SEED` (CalomlError otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise CalomlError(f"a seed must be a whole number from 0 to {MAX_SEED}, got {text!r}")
    return value


def output_file(text: str) -> Path:
    """An output file's path, checked before any work (:func:`caloml.output_paths.check_output_path`)."""
    return check_output_path(text)


def output_directory(text: str) -> Path:
    """An output directory's path, checked before any work (:func:`caloml.output_paths.check_output_path`)."""
    return check_output_path(text, directory=True)


def machine_memory_bytes() -> int:
    """The machine's physical memory in bytes (0 when the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 0


def format_bytes(n_bytes: float) -> str:
    """``n_bytes`` in the largest binary unit that keeps the number at least 1 (``"988.0 GiB"``)."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024.0 or unit == "PiB":
            return f"{value:.1f} {unit}"
        value /= 1024.0
    raise AssertionError("unreachable")


def check_memory(needed_bytes: float, what: str, available_bytes: int | None = None, hint: str = "") -> None:
    """Refuse (CalomlError, with the number) ``what`` when it needs more than the machine's memory.

    ``available_bytes`` defaults to :func:`machine_memory_bytes`; a machine that does not say is not checked.
    ``hint`` (what to change) ends the message.
    """
    available = machine_memory_bytes() if available_bytes is None else available_bytes
    if available > 0 and needed_bytes > available:
        raise CalomlError(
            f"{what} would need about {format_bytes(needed_bytes)} of memory; this machine has "
            f"{format_bytes(available)}" + (f" ({hint})" if hint else "")
        )
