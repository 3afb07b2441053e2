"""The one console script: every subcommand answers --help, and a command line loads only its own module."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from gridwatch.cli import COMMAND_GROUP, build_parser, chosen_command, main


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


# ------------------------------------------------------------------------------ one module per command line

COMMANDS = entry_points(group=COMMAND_GROUP)


@pytest.mark.parametrize("ep", COMMANDS, ids=lambda ep: ep.name)
def test_each_entry_point_is_named_after_a_subcommand_it_adds(ep):
    parser = argparse.ArgumentParser(prog="gridwatch")
    sub = parser.add_subparsers(dest="command")
    ep.load()(sub)
    assert ep.name in sub.choices
    assert set(sub.choices) <= {e.name for e in COMMANDS}, "a subcommand without an entry point of its name"


def test_every_subcommand_has_an_entry_point_of_its_name():
    assert {p[0] for p in PATHS} == {ep.name for ep in COMMANDS}


@pytest.mark.parametrize("argv, command", [
    (["kafka", "start"], "kafka"), (["-v", "worker"], "worker"), (["db", "status", "--json"], "db"),
    (["--help"], None), (["-v", "-h", "kafka"], None), (["-v"], None), ([], None),
])
def test_the_chosen_command(argv, command):
    assert chosen_command(argv) == command


def test_a_command_line_naming_its_subcommand_imports_only_that_module():
    code = ("import sys; from gridwatch.cli import build_parser; build_parser(sys.argv[1]); "
            "print(' '.join(m for m in ('streams.worker', 'console.app', 'history.cli', 'devtools.broker', "
            "'devtools.replay', 'streams.operator') if m in sys.modules))")
    loaded = {cmd: subprocess.run([sys.executable, "-c", code, cmd], capture_output=True, text=True, timeout=120,
                                  check=True).stdout.split() for cmd in ("kafka", "alert", "no-such-command")}
    assert loaded["kafka"] == ["devtools.broker"]
    assert loaded["alert"] == ["streams.operator"]
    assert len(loaded["no-such-command"]) == 6  # an unknown command gets the whole list of them


def test_an_unknown_command_is_refused_with_the_whole_list(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-command"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-command'" in err and "'worker'" in err and "'kafka'" in err
