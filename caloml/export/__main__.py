"""The export command line: ``python -m caloml.export MODEL ...``.

Commands::

    gan --model PATH [--saved-models DIR] [--version V]        a trained 3DGAN as a TF Serving SavedModel
    triforce --model PATH [--saved-models DIR] [--version V]   a trained Triforce network (reconstruct signature)

Each model family is one entry of :data:`SUBCOMMANDS`, a pair (add-parser function, run function) as in
``python -m caloml.data``; another exporter is one more call, for example
``register("triforce", add_triforce_parser, run_triforce)``. User errors are one line (exit status 2).
"""

from __future__ import annotations

from collections.abc import Sequence

from caloml.cli_commands import CommandRegistry
from caloml.errors import run_cli
from caloml.export import gan, pointflow, pyramid, triforce

__all__ = ["SUBCOMMANDS", "build_parser", "cli", "main", "register"]


COMMANDS = CommandRegistry(
    "python -m caloml.export",
    "Export a trained model as a TensorFlow SavedModel in TF Serving's layout.",
    metavar="MODEL",
)
#: The commands: name -> (add-parser function, run function).
SUBCOMMANDS = COMMANDS.commands
register = COMMANDS.register
build_parser = COMMANDS.build_parser


register("gan", gan.add_gan_parser, gan.run_gan)
register("triforce", triforce.add_triforce_parser, triforce.run_triforce)
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
