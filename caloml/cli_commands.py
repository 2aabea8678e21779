"""The subcommand registry every ``python -m caloml.X COMMAND`` line is built from.

A command is a pair (add-parser function, run function): the first takes argparse's ``subparsers`` action, adds
the command's parser (named like the command) and returns it; the second takes the parsed namespace and returns
an exit status (None for 0). A command line is one :class:`CommandRegistry`; adding a command (a new model to
generate from, a new evaluation) is one :meth:`CommandRegistry.register` call. A ``__main__`` module is then its
registry, its ``register`` calls, ``main = COMMANDS.main``, ``cli = COMMANDS.cli`` and ``if __name__ ==
"__main__": cli()``; the commands are described in ``docs/cli.md``. Every command takes ``--verbose``
(TensorFlow's own log lines, hidden by default: :mod:`caloml.quiet`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import NoReturn

from caloml.cli_args import CommandLineParser, add_verbose_flag, apply_verbosity
from caloml.errors import run_cli
from caloml.output_paths import output_of, write_errors_as_one_line

AddParser = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], argparse.ArgumentParser]
Run = Callable[[argparse.Namespace], int | None]


class CommandRegistry:
    """The commands of one command line, in the order of its help."""

    def __init__(self, prog: str, description: str, metavar: str = "COMMAND") -> None:
        self.prog = prog
        self.description = description
        self.metavar = metavar
        #: name -> (add-parser function, run function)
        self.commands: dict[str, tuple[AddParser, Run]] = {}

    def register(self, name: str, add_parser: AddParser, run: Run) -> None:
        """Add (or replace) the command ``name``: ``add_parser(subparsers)`` must add a parser called ``name``."""
        self.commands[name] = (add_parser, run)

    def build_parser(self) -> argparse.ArgumentParser:
        """The argument parser, one sub-parser per registered command."""
        parser = CommandLineParser(prog=self.prog, description=self.description)
        add_verbose_flag(parser)
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(  # type: ignore[assignment]
            dest="command", required=True, metavar=self.metavar
        )  # its parsers are CommandLineParsers (argparse makes sub-parsers of the main parser's class)
        for name, (add_parser, run) in self.commands.items():
            subparser = add_parser(subparsers)
            if subparser.prog.split()[-1] != name:
                raise ValueError(f"the add-parser function of {name!r} added {subparser.prog!r}")
            subparser.set_defaults(run=run)
            add_verbose_flag(subparser)
        return parser

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Parse ``argv`` (default ``sys.argv[1:]``) and run the command; returns its exit status.

        A write that fails (a full disk...) is a one-line user error (:mod:`caloml.output_paths`)."""
        args = self.build_parser().parse_args(argv)
        apply_verbosity(args)
        with write_errors_as_one_line(output_of(args)):
            return int(args.run(args) or 0)

    def cli(self, argv: Sequence[str] | None = None) -> NoReturn:
        """Console entry point: :meth:`main`, a user error printed as one line (exit status 2), then exit."""
        run_cli(self.main, argv, process_exit=True)
