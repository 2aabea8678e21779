"""The generation command line: ``python -m caloml.generate MODEL ...``.

Commands: ``gan`` (showers of a trained 3DGAN, LCD layout) and ``pointflow`` (a trained CaloPointFlow); each
writes an HDF5 file. A model family is one :meth:`caloml.cli_commands.CommandRegistry.register` call on
:data:`COMMANDS`; user errors are one line (exit status 2). See ``docs/cli.md``.
"""

from __future__ import annotations

from caloml.cli_commands import CommandRegistry
from caloml.generate import crystal, gan, pointflow, pyramid

__all__ = ["COMMANDS", "cli", "main"]


COMMANDS = CommandRegistry(
    "python -m caloml.generate",
    "Generate showers with a trained model into an HDF5 file.",
    metavar="MODEL",
)
COMMANDS.register("gan", gan.add_gan_parser, gan.run_gan)
COMMANDS.register("pointflow", pointflow.add_pointflow_parser, pointflow.run_pointflow)
for _kind in ("wgan", "vae", "vaewgan"):  # the crystal-5x5 generators
    COMMANDS.register(_kind, crystal.add_crystal_parser(_kind), crystal.make_run(_kind))
COMMANDS.register("pyramid", pyramid.add_pyramid_parser, pyramid.run_pyramid)

main = COMMANDS.main
cli = COMMANDS.cli

if __name__ == "__main__":
    cli()
