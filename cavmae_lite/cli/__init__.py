"""The ``cavmae-lite`` command. One module per command group; argparse lives only here."""

from .main import COMMANDS, UserError, build_parser, main

__all__ = ["COMMANDS", "UserError", "build_parser", "main"]
