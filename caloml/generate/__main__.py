"""The generation command line: ``python -m caloml.generate MODEL ...``.

Commands::

    gan --model PATH -n N [--particle P] [--energy E | --energy-range A B] [--theta T | --theta-range A B]
        --seed S --out FILE.h5 [--batch-size B] [--overwrite]     showers of a trained 3DGAN, LCD layout

Each model family is one entry of :data:`SUBCOMMANDS`, a pair (add-parser function, run function) as in
``python -m caloml.data``: the first takes the ``subparsers`` action and adds the command's parser, the second
takes the parsed arguments and returns an exit status. Another generator is one more call, for example
``register("pointflow", add_pointflow_parser, run_pointflow)``. User errors are one line (exit status 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from caloml.errors import run_cli
from caloml.generate import gan

__all__ = ["SUBCOMMANDS", "build_parser", "cli", "main", "register"]

AddParser = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], argparse.ArgumentParser]
Run = Callable[[argparse.Namespace], int | None]

#: The generators, in the order of the help: name -> (add-parser function, run function).
SUBCOMMANDS: dict[str, tuple[AddParser, Run]] = {}


def register(name: str, add_parser: AddParser, run: Run) -> None:
    """Add (or replace) the generator command ``name``: ``add_parser(subparsers)`` must add a parser ``name``."""
    SUBCOMMANDS[name] = (add_parser, run)


register("gan", gan.add_gan_parser, gan.run_gan)


def build_parser() -> argparse.ArgumentParser:
    """The parser with one subcommand per registered generator."""
    parser = argparse.ArgumentParser(
        prog="python -m caloml.generate", description="Generate showers with a trained model into an HDF5 file."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="MODEL")
    for name, (add_parser, run) in SUBCOMMANDS.items():
        sub = add_parser(subparsers)
        if sub.prog.split()[-1] != name:
            raise RuntimeError(f"generator {name!r}: its add-parser function added {sub.prog!r}")
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


def cli() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    cli()
