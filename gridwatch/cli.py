"""The ``gridwatch`` command. Each module registers its own subcommands; every one has ``--help``."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from gridwatch.config import ConfigError, Settings, check_twilio

# Every subcommand comes from a module that owns it, listed in pyproject.toml's "gridwatch.commands" entry point
# group: each entry is named after the subcommand it adds and is ``register(subparsers)``, which adds parsers whose
# ``func(args) -> int`` runs the command (a module adding two subcommands is listed under both names).
# This module imports none of them by name, so the ``gridwatch`` package stays the bottom layer while the
# command sits on top of the product (streams, console, history ...) and the dev tools (devtools/) alike. A
# command line that names its subcommand imports only the module that adds it (the modules between them pull in
# Faust, aiohttp, SQLAlchemy, pandas ...: about 2 s together); only the list of every subcommand, the top-level
# help, needs them all.
COMMAND_GROUP = "gridwatch.commands"
# Commands that send SMS or check Twilio's signatures: they refuse partial or mixed Twilio settings.
TWILIO_COMMANDS = ("worker", "webhooks", "demo")


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names, or None when it asks for the top-level help (or names none)."""
    for arg in argv:
        if arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):  # the top-level options take no value, so this is the subcommand
            return arg
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``gridwatch`` parser; with ``command``, only the module that adds that subcommand is loaded (every
    one when no entry point has that name, so an unknown or misspelt one still gets the full list)."""
    parser = argparse.ArgumentParser(
        prog="gridwatch",
        description="Smart-meter monitoring and proactive customer notification on Apache Kafka.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = entry_points(group=COMMAND_GROUP)
    if not commands:
        raise SystemExit(f"gridwatch: no command installed (entry point group {COMMAND_GROUP!r}); "
                         "install the package first: `make install` (pip install -e .)")
    chosen = [ep for ep in commands if ep.name == command] or list(commands)
    for register in dict.fromkeys(ep.value for ep in chosen):  # a module adding two commands is loaded once
        next(ep for ep in chosen if ep.value == register).load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(chosen_command(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kafka-python logs every connection and metadata refresh at INFO
        logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        if args.command in TWILIO_COMMANDS:
            check_twilio(Settings())
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"gridwatch {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
