"""Argument types shared by caloml's command lines (argparse ``type=`` callables). See ``docs/cli.md``."""

from __future__ import annotations

import argparse

import numpy as np

from caloml.quiet import set_verbose


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
