"""``gridwatch detectors list``: what detectors are installed, what they find and how they are tuned.

How well they do is ``gridwatch backtest`` (devtools/backtest.py), which drives them with the simulator or a
recorded CSV.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
from typing import Any

from detectors.registry import DetectorError, load

__all__ = ["register", "describe", "format_list", "emit"]


# --------------------------------------------------------------------------------------------- list

def describe(classes: dict[str, type]) -> list[dict[str, Any]]:
    """JSON-ready description of detector classes: name, key, input, kinds, detects, parameters."""
    out = []
    for name, cls in classes.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        out.append({
            "name": name, "class": f"{cls.__module__}:{cls.__qualname__}", "key": cls.key, "input": cls.input,
            "kinds": list(cls.kinds), "detects": cls.detects, "summary": doc[0] if doc else "",
            "parameters": [{"name": p.name, "default": p.default, "help": p.help} for p in cls.parameters()],
        })
    return out


def _table(rows: list[tuple[str, ...]], indent: str = "", width: int | None = None) -> list[str]:
    """Aligned columns; the last one is wrapped to ``width`` (default: the terminal's, at least 80)."""
    width = width or max(80, shutil.get_terminal_size((120, 24)).columns)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lead = len(indent) + sum(w + 2 for w in widths)
    out = []
    for r in rows:
        head = indent + "".join(c.ljust(w + 2) for c, w in zip(r, widths))
        tail = textwrap.wrap(r[-1], max(30, width - lead)) or [""]
        out.append((head + tail[0]).rstrip())
        out += [" " * lead + t for t in tail[1:]]
    return out


def format_list(described: list[dict[str, Any]]) -> str:
    """A summary table of the detectors, then each detector's parameters with default and help."""
    if not described:
        return "no detector installed (entry point group 'gridwatch.detectors')"
    lines = _table([("NAME", "KEY", "INPUT", "KINDS", "DETECTS")]
                   + [(d["name"], d["key"], d["input"], ", ".join(d["kinds"]), d["detects"]) for d in described])
    for d in described:
        lines += ["", f"{d['name']} ({d['class']})"]
        if not d["parameters"]:
            lines.append("  no parameters")
            continue
        lines += _table([(p["name"], f"= {json.dumps(p['default'])}", p["help"]) for p in d["parameters"]],
                        indent="  ")
    return "\n".join(lines)


def load_detectors() -> dict[str, type]:
    """The installed detector classes by name (:func:`detectors.registry.load`)."""
    return load()


def run_list(args: argparse.Namespace) -> int:
    try:
        classes = load_detectors()
    except DetectorError as exc:
        print(f"gridwatch detectors list: {exc}", file=sys.stderr)
        return 1
    described = describe(classes)
    emit(json.dumps(described, indent=2, ensure_ascii=False) if args.json else format_list(described))
    return 0


def emit(text: str) -> None:
    """Print to stdout; a reader that stops early (``| head``) is not an error."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# ---------------------------------------------------------------------------------------------- CLI

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "detectors", help="the installed detectors",
        description="Detectors are found through the 'gridwatch.detectors' entry point group (built-in or from "
                    "another package); the worker runs those named in GRIDWATCH_DETECTORS (default all).")
    sub = p.add_subparsers(dest="detectors_command", metavar="COMMAND", required=True)
    lp = sub.add_parser(
        "list", help="name, key, input, finding kinds and parameters of every installed detector",
        description="List the installed detectors: what each one detects, what it is keyed by (meter, feeder, "
                    "customer), what it reads (readings, events, daily usage), the finding kinds it emits, and "
                    "each parameter with its default and meaning (tune one in a backtest with --set).")
    lp.add_argument("--json", action="store_true", help="machine-readable output")
    lp.set_defaults(func=run_list)
