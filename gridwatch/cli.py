"""The ``gridwatch`` command. Each module registers its own subcommands; every one has ``--help``."""

from __future__ import annotations

import argparse
import logging
import sys

# Modules that own subcommands; each exposes ``register(subparsers)`` which adds parsers whose
# ``func(args) -> int`` runs the command. Heavy imports (Faust, Prophet) stay inside the commands.
COMMAND_MODULES = (
    "streams.broker",      # kafka start|stop|status
    "streams.topics",      # topics create|verify
    "streams.worker",      # worker
    "streams.simulator",   # simulate
    "streams.replay",      # replay
    "notifiers.sandbox",   # sandbox
    "streams.webhooks",    # webhooks
    "notifiers.webhook",   # webhook-secret (a customer's webhook signing secret)
    "streams.demo",        # demo
    "detectors.cli",       # detectors list, backtest
    "streams.operator",    # silence add|list|expire, alert ack|resolve|list
    "streams.deadletters", # dlq list|replay
    "console.app",         # console (the operations console's web API and pages)
    "history.cli",         # db start|stop|status|url|migrate|backup, history project|refresh|report
)
# Commands that send SMS or check Twilio's signatures: they refuse partial or mixed Twilio settings.
TWILIO_COMMANDS = ("worker", "webhooks", "demo")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="gridwatch",
        description="Smart-meter monitoring and proactive customer notification on Apache Kafka.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
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
    from gridwatch.config import ConfigError, Settings, check_twilio

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
