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

from collections.abc import Sequence

from caloml.cli_commands import CommandRegistry
from caloml.errors import run_cli
from caloml.generate import gan, pointflow, pyramid

__all__ = ["SUBCOMMANDS", "build_parser", "cli", "main", "register"]


COMMANDS = CommandRegistry(
    "python -m caloml.generate",
    "Generate showers with a trained model into an HDF5 file.",
    metavar="MODEL",
)
#: The commands: name -> (add-parser function, run function).
SUBCOMMANDS = COMMANDS.commands
register = COMMANDS.register
build_parser = COMMANDS.build_parser


register("gan", gan.add_gan_parser, gan.run_gan)
register("pointflow", pointflow.add_pointflow_parser, pointflow.run_pointflow)
register("pyramid", pyramid.add_pyramid_parser, pyramid.run_pyramid)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the command."""
    return COMMANDS.main(argv)


def cli() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    cli()
