"""The one console script: every subcommand answers --help."""

from __future__ import annotations

import argparse

import pytest

from gridwatch.cli import build_parser, main


def subcommand_paths(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from subcommand_paths(sub, (*prefix, name))


PATHS = list(subcommand_paths(build_parser()))


def test_every_documented_command_exists():
    top = {p[0] for p in PATHS}
    assert {"kafka", "topics", "worker", "simulate", "replay", "sandbox", "demo"} <= top
    assert {("kafka", "start"), ("kafka", "stop"), ("kafka", "status"), ("topics", "create"),
            ("topics", "verify")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=" ".join)
def test_help(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gridwatch " + " ".join(path))
