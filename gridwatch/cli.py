"""The ``gridwatch`` command. Each module registers its own subcommands; every one has ``--help``."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from gridwatch.config import ConfigError, Settings, check_twilio

# Every subcommand comes from a module that owns it, listed in pyproject.toml's "gridwatch.commands" entry point
# group: each entry is ``register(subparsers)``, which adds parsers whose ``func(args) -> int`` runs the command.
# This module imports none of them by name, so the ``gridwatch`` package stays the bottom layer while the
# command sits on top of the product (streams, console, history ...) and the dev tools (devtools/) alike.
COMMAND_GROUP = "gridwatch.commands"
# Commands that send SMS or check Twilio's signatures: they refuse partial or mixed Twilio settings.
TWILIO_COMMANDS = ("worker", "webhooks", "demo")


def build_parser() -> argparse.ArgumentParser:
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
    for command in commands:
        command.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
