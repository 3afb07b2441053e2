"""An alert kind is declared once (gridwatch/kinds.py); every list of kinds elsewhere is derived from it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gridwatch import kinds
from gridwatch.kinds import KINDS, Kind, having

ROOT = Path(__file__).resolve().parents[2]
NAMES = {k.name for k in KINDS}


def test_the_derived_lists_are_the_declared_properties():
    from detectors import topology
    from history import reliability
    from notifiers import path, quiet, silences, templates, tips

    assert path.RESTORATION_KINDS == ("outage",)
    assert path.HELD_DURING_OUTAGE == ("bill_spike",)
    assert path.VOLTAGE_KINDS == topology.VOLTAGE_KINDS == ("undervoltage", "overvoltage", "sag", "swell",
                                                            "loose_neutral")
    assert quiet.DEFERRABLE_KINDS == {"bill_spike", "tip"} and tips.TIP_KINDS == ("bill_spike", "tip")
    assert silences.SAFETY_KINDS == {"outage", "loose_neutral"}
    assert topology.CORRELATED_KINDS == ("undervoltage", "overvoltage")
    assert topology.NEEDS_CALM_NEIGHBOURS == ("loose_neutral",)
    assert reliability.INCIDENT_KINDS == ("outage", "momentary_interruption")
    assert set(templates._SPECIFIC_KINDS) == {"undervoltage", "overvoltage", "sag", "swell", "outage",
                                              "loose_neutral"}


def test_every_kind_a_built_in_detector_emits_is_declared():
    from detectors.registry import load

    emitted = {k for cls in load().values() for k in cls.kinds}
    assert emitted <= NAMES, f"declare {sorted(emitted - NAMES)} in gridwatch/kinds.py"
    assert set(kinds.names()) - emitted == set(), "a declared alert kind that no detector emits"


def test_a_kind_is_declared_once_with_a_known_family():
    assert len(NAMES) == len(KINDS)
    with pytest.raises(ValueError, match="family"):
        Kind("flicker", "lighting", "lamps flicker")
    with pytest.raises(ValueError, match="no kind property"):
        having("urgent")
    assert kinds.kind("outage").restoration and kinds.kind("not-declared") is None


def test_adding_a_kind_is_one_declaration():
    """A new kind appended to the table (nothing else changed) is in every list its properties name."""
    script = """
import json
from gridwatch import kinds
kinds.KINDS += (kinds.Kind("frequency_deviation", "voltage", "mains frequency off", safety=True,
                           deferrable=True, restoration=True, inhibited_by_outage=True, voltage_trace=True,
                           interruption=True, tip=True),)
from detectors import topology
from history import reliability
from notifiers import path, quiet, silences, tips
print(json.dumps({"restoration": path.RESTORATION_KINDS, "inhibited": path.VOLTAGE_KINDS,
                  "deferrable": sorted(quiet.DEFERRABLE_KINDS), "safety": sorted(silences.SAFETY_KINDS),
                  "tip": tips.TIP_KINDS, "trace": topology.VOLTAGE_KINDS,
                  "incident": reliability.INCIDENT_KINDS, "correlated": topology.CORRELATED_KINDS}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lists = json.loads(out.stdout)
    new = "frequency_deviation"
    assert all(new in lists[name] for name in ("restoration", "inhibited", "deferrable", "safety", "tip",
                                               "trace", "incident"))
    assert new not in lists["correlated"]


# the detectors' own ``kinds = (...)`` (what each emits) and message texts keyed by kind are not lists of kinds
_EXEMPT_TARGETS = {"kinds", "KIND", "KIND_BY_CLASS", "BILL_KIND", "MOMENTARY_KIND", "OUTAGE", "MOMENTARY"}


def test_no_module_keeps_its_own_list_of_kinds():
    """A module-level tuple, list or set of two or more kind names outside gridwatch/kinds.py is a second
    declaration that a new kind would have to be added to by hand."""
    found = []
    for pkg in ("detectors", "notifiers", "streams", "history", "console"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)} <= _EXEMPT_TARGETS:
                    continue
                for sub in ast.walk(node.value):
                    if isinstance(sub, (ast.Tuple, ast.List, ast.Set)):
                        named = [e.value for e in sub.elts if isinstance(e, ast.Constant) and e.value in NAMES]
                        if len(named) >= 2:
                            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {named}")
    js = (ROOT / "console" / "static" / "console.js").read_text(encoding="utf-8")
    assert '"undervoltage", "overvoltage"' not in js, "console.js lists kinds: it reads /api/kinds"
    assert not found, "lists of kinds outside gridwatch/kinds.py:\n" + "\n".join(found)


def test_the_console_serves_the_declared_kinds():
    from tests.unit.test_console_app import OP, arun, console

    async def go():
        async with console() as c:
            assert (await c.get("/api/kinds")).status == 401
            r = await c.get("/api/kinds", headers=OP)
            assert r.status == 200
            served = (await r.json())["kinds"]
            assert [k["name"] for k in served] == list(kinds.names())
            assert {k["name"]: k["family"] for k in served}["loose_neutral"] == "safety"
    arun(go())
