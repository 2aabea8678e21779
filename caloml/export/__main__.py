"""The export command line: ``python -m caloml.export MODEL ...``.

Commands: ``gan``, ``triforce``, ``pointflow``, ``pyramid``, ``wgan``, ``vae`` and ``vaewgan``, each writing a
trained model as a TensorFlow SavedModel in TF Serving's layout and, with ``--format saved_model,onnx``, as ONNX
beside it. A model family is one :meth:`caloml.cli_commands.CommandRegistry.register` call on :data:`COMMANDS`; user
errors are one line (exit status 2). See ``docs/serving.md`` and ``docs/cli.md``.
"""

from __future__ import annotations

from caloml.cli_commands import CommandRegistry
from caloml.export import crystal, gan, pointflow, pyramid, triforce

__all__ = ["COMMANDS", "cli", "main"]


COMMANDS = CommandRegistry(
    "python -m caloml.export",
    "Export a trained model as a TensorFlow SavedModel in TF Serving's layout.",
    metavar="MODEL",
)
COMMANDS.register("gan", gan.add_gan_parser, gan.run_gan)
COMMANDS.register("triforce", triforce.add_triforce_parser, triforce.run_triforce)
COMMANDS.register("pointflow", pointflow.add_pointflow_parser, pointflow.run_pointflow)
for _kind in ("wgan", "vae", "vaewgan"):  # the crystal-5x5 generators
    COMMANDS.register(_kind, crystal.add_crystal_export_parser(_kind), crystal.make_export_run(_kind))
COMMANDS.register("pyramid", pyramid.add_pyramid_parser, pyramid.run_pyramid)

main = COMMANDS.main
cli = COMMANDS.cli

if __name__ == "__main__":
    cli()
