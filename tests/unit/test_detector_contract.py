"""Every registered detector keeps the detector contract (detectors.testing), and the suite catches the
mistakes it is there to catch."""

from __future__ import annotations

import copy
import json
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from detectors import registry
from detectors.api import Detector, param
from detectors.testing import (
    CHECKS, HOOK_RULES, Clock, Scenario, Step, check_detector, context, customer, day, days, event, feeder, reading, readings,
    run, scenario, window,
)

REGISTERED = registry.load()
#: (name, rule) of every registered detector; a hook's rule ("fits", "mutes") only for a detector of its base class
#: (there is nothing to run otherwise)
RULES = [(n, r) for n, cls in REGISTERED.items() for r in CHECKS
         if r not in HOOK_RULES or issubclass(cls, HOOK_RULES[r])]


@pytest.mark.parametrize("name, rule", RULES, ids=[f"{n}-{r}" for n, r in RULES])
def test_registered_detector_keeps_the_contract(name, rule):
    CHECKS[rule](REGISTERED[name])


def test_every_entry_point_in_pyproject_is_installed():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text("utf-8")
    declared = tomllib.loads(text)["project"].get("entry-points", {}).get(registry.ENTRY_POINT_GROUP, {})
    missing = sorted(set(declared) - set(REGISTERED))
    assert not missing, f"declared in pyproject.toml but not installed: {missing} (run: pip install -e .)"


# ------------------------------------------------------------------------------ a detector that is right

@dataclass(frozen=True)
class DipConfig:
    threshold: float = param(0.9, "v_min below this fraction of nominal is a dip")


class DipDetector(Detector):
    """Each interval whose v_min is under ``threshold`` x nominal is one ``sag`` event."""

    name = "dip"
    detects = "intervals with a low minimum voltage"
    kinds = ("sag",)
    Config = DipConfig

    def new_state(self) -> dict:
        return {"last_ts": None, "dips": 0}

    def score(self, r, ctx):
        return None if r.v_min is None else r.v_min / ctx.profile.nominal

    def decide(self, state, scored, ctx):
        st, out = dict(state), []
        for r, pu in scored:
            if st["last_ts"] is not None and r.ts <= st["last_ts"]:
                continue  # a duplicate or a late reading
            st["last_ts"] = r.ts
            if pu is not None and pu < self.config.threshold:
                st["dips"] += 1
                out.append({"kind": "sag", "status": "event", "meter_id": r.meter_id,
                            "started_at": r.ts - r.interval_s, "detected_at": r.ts, "at": r.ts,
                            "evidence": {"v_min": r.v_min, "dips": st["dips"]}})
        return st, out


def test_a_correct_detector_passes_every_rule():
    check_detector(DipDetector)


def test_the_suite_inputs_make_the_detector_find_something():
    _, per_step = run(DipDetector(), scenario(DipDetector))
    found = [f for fs in per_step for f in fs]
    # the three sags, the swinging day's v_min at 0.86 x, and the undervoltage's v_min
    assert len(found) >= 3
    assert {f["kind"] for f in found} == {"sag"}


# ------------------------------------------------------------------------------ detectors that are wrong

class SortsInPlace(DipDetector):
    """Sorts the caller's list."""
    name = "sorts_in_place"

    def process(self, state, inputs, ctx):
        inputs.sort(key=lambda r: r.ts)
        return super().process(state, inputs, ctx)


class CountsInPlace(DipDetector):
    """Counts advances in the state it was given."""
    name = "counts_in_place"

    def advance(self, state, watermark, ctx):
        state["advanced"] = watermark
        return state, []


class NoDocstring(DipDetector):
    name = "no_docstring"


class KeepsASet(DipDetector):
    """Remembers timestamps in a set."""
    name = "keeps_a_set"

    def new_state(self):
        return {"last_ts": None, "dips": 0}

    def decide(self, state, scored, ctx):
        st, out = super().decide(state, scored, ctx)
        return {**st, "seen": set(st.get("seen", ())) | {r.ts for r, _ in scored}}, out


class KeepsATuple(DipDetector):
    """Keeps its last reading as a tuple, which JSON turns into a list."""
    name = "keeps_a_tuple"

    def decide(self, state, scored, ctx):
        st, out = super().decide(state, scored, ctx)
        return {**st, "last": (st["last_ts"], "M000001")}, out


class NoDedup(DipDetector):
    """Counts every dip it is given, twice if given twice."""
    name = "no_dedup"

    def decide(self, state, scored, ctx):
        out = [{"kind": "sag", "status": "event", "at": r.ts, "started_at": r.ts, "detected_at": r.ts}
               for r, pu in scored if pu is not None and pu < self.config.threshold]
        return dict(state), out


class TakesInputsAsTheyCome(DipDetector):
    """Does not sort: a reading older than the previous one in the same call is dropped as late."""
    name = "takes_inputs_as_they_come"

    def process(self, state, inputs, ctx):
        return self.decide(dict(state), [(r, self.score(r, ctx)) for r in inputs], ctx)


class ReadsTheWallClock(DipDetector):
    """Stamps its findings with the wall clock."""
    name = "reads_the_wall_clock"

    def decide(self, state, scored, ctx):
        st, out = super().decide(state, scored, ctx)
        return st, [{**f, "evidence": {**f["evidence"], "noticed": time.time()}} for f in out]


class TripsOnNulls(DipDetector):
    """Divides v_min without looking."""
    name = "trips_on_nulls"

    def score(self, r, ctx):
        return r.v_min / ctx.profile.nominal


class FindsNothing(DipDetector):
    """Never says anything."""
    name = "finds_nothing"

    def decide(self, state, scored, ctx):
        return dict(state), []


class WrongKind(DipDetector):
    """Emits a kind it does not declare."""
    name = "wrong_kind"

    def decide(self, state, scored, ctx):
        st, out = super().decide(state, scored, ctx)
        return st, [{**f, "kind": "dip"} for f in out]


@pytest.mark.parametrize("cls, rule, words", [
    (SortsInPlace, "no_mutation", "changed its inputs"),
    (CountsInPlace, "no_mutation", "advance() at step 0 changed its state"),
    (NoDocstring, "docstring", "no docstring"),
    (NoDocstring, "registry", "has no docstring"),
    (KeepsASet, "json_state", "not JSON"),
    (KeepsATuple, "json_state", "tuple became list"),
    (NoDedup, "duplicates", "duplicated inputs give other findings"),
    (TakesInputsAsTheyCome, "out_of_order", "shuffled inputs give other findings"),
    (ReadsTheWallClock, "reproducible", "different findings"),
    (TripsOnNulls, "missing_fields", "raised TypeError"),
    (FindsNothing, "findings", "no finding"),
    (WrongKind, "findings", "kind 'dip' is not among the declared kinds"),
])
def test_the_suite_catches_a_broken_detector(cls, rule, words):
    with pytest.raises(AssertionError) as exc:
        CHECKS[rule](cls)
    msg = str(exc.value)
    assert f"detector {cls.name!r}" in msg and f"'{rule}'" in msg and words in msg
    with pytest.raises(AssertionError):
        check_detector(cls)


@pytest.mark.parametrize("broken, words", [
    ({"__doc__": None}, "has no docstring"),
    ({"name": "Bad-Name"}, "must be lower case"),
    ({"detects": ""}, "says nothing in 'detects'"),
    ({"key": "street"}, "key 'street'"),
    ({"input": "tweets"}, "input 'tweets'"),
    ({"kinds": ()}, "declares no finding kinds"),
    ({"new_state": lambda self: {"seen": {1, 2}}}, "cannot be constructed"),
    ({"new_state": lambda self: {"last": (1, 2)}}, "does not survive a JSON round trip"),
])
def test_registry_rejects_a_broken_class_naming_it(broken, words):
    attrs = {"__doc__": "A detector.", "name": "broken_one", **broken}
    cls = type("Broken", (DipDetector,), attrs)
    with pytest.raises(registry.DetectorError) as exc:
        registry.validate(cls)
    label = attrs["name"] or "Broken"
    assert str(exc.value).startswith(f"detector {label!r}") and words in str(exc.value)


def test_registry_rejects_a_parameter_without_default_and_a_non_detector():
    @dataclass(frozen=True)
    class NoDefault:
        threshold: float

    cls = type("Broken", (DipDetector,), {"__doc__": "x", "name": "no_default", "Config": NoDefault})
    with pytest.raises(registry.DetectorError, match="detector 'no_default': parameter 'threshold' has no default"):
        registry.validate(cls)
    with pytest.raises(registry.DetectorError, match="detector 'thing': is not a subclass"):
        registry.validate(object, "thing")


# ------------------------------------------------------------------------------ the builders and the clock

def test_clock_moves_only_when_told():
    c = Clock("2026-07-01T00:00:00Z")
    assert c.now == 1782864000
    assert c.ts("+15m") == c.now + 900 and c.ts(60) == c.now + 60 and c.ts("-1h") == c.now - 3600
    assert c.ts("2026-07-01T10:00Z") == 1782900000
    assert c.ts("1h30m") == c.now + 5400
    with pytest.raises(ValueError, match="not a time or a duration"):
        c.ts("soon")
    assert c.advance("1h30m") == 1782869400 and c.iso() == "2026-07-01T01:30:00Z"
    with pytest.raises(ValueError):
        c.advance(-1)


def test_readings_follow_the_clock_and_the_fault_windows():
    c = Clock("2026-07-01T00:00:00Z")
    rs = readings("M000007", c, 8, v=230.0, faults=[window("2026-07-01T00:30Z", "45m", v_avg=196.0)],
                  at={7: {"v_min": 150.0}})
    assert [r.ts - 1782864000 for r in rs] == [900 * (i + 1) for i in range(8)]   # ts = end of interval
    assert c.now == rs[-1].ts
    assert [r.v_avg for r in rs] == [230.0, 230.0, 196.0, 196.0, 196.0, 230.0, 230.0, 230.0]
    assert rs[3].v_min == 194.0 and rs[3].v_max == 197.0                      # they follow v_avg
    assert rs[7].v_min == 150.0 and rs[7].v_avg == 230.0
    more = readings("M000007", c, 2)
    assert more[0].ts == rs[-1].ts + 900


def test_builders_make_contract_values():
    r = reading("M000002", "2026-07-01T00:15:00Z", v_avg=None, kwh=None, quality="estimated")
    assert (r.v_min, r.v_max, r.ts) == (None, None, 1782864900)
    assert event("M000002", "2026-07-01T10:00Z", "power_restore").type == "power_restore"
    c = customer(customer_id="C000042", nominal_voltage=120, timezone="America/New_York")
    assert c["meter_id"] == "M000042"
    ctx = context(c)
    assert ctx.profile.name == "ANSI C84.1 Range A" and ctx.meter_id == "M000042"
    with pytest.raises(Exception, match="phone"):
        customer(phone="not a number")
    f = feeder(transformers=2, meters_per_transformer=2)
    assert f.transformers == {"T0001": ["M000001", "M000002"], "T0002": ["M000003", "M000004"]}
    assert f.context({"M000001": 5}).members["M000003"]["transformer_id"] == "T0002"


def test_days_of_usage():
    d = day("2026-07-06", 12.0, tz="Europe/London")
    assert d["weekday"] == 0 and d["ts"] == 1783292400         # the day starts at midnight BST, 23:00 UTC
    assert d["night_kwh"] == 2.4 and d["evening_kwh"] == 3.6
    ds = days("2026-07-01", 3, [1.0, 2.0, 3.0], at={2: {"intervals": 90}})
    assert [x["date"] for x in ds] == ["2026-07-01", "2026-07-02", "2026-07-03"]
    assert [x["kwh"] for x in ds] == [1.0, 2.0, 3.0] and ds[2]["intervals"] == 90


def test_a_day_has_the_shape_the_usage_stage_closes():
    from detectors.usage import accumulate

    rs = readings("M000001", "2026-07-05T23:00:00Z", 96 + 12, kwh=0.25)   # July 6 in London, and 3 h more
    _, closed = accumulate(None, rs, "Europe/London")
    [real] = closed
    built = day("2026-07-06", 24.0, tz="Europe/London", night_kwh=5.0, evening_kwh=5.0)
    assert set(built) == set(real)
    assert {k: built[k] for k in built} == {k: real[k] for k in built}


def test_a_scenario_can_be_replaced_for_a_detector_the_default_inputs_do_not_suit():
    ctx = context()
    quiet = Scenario([Step(readings(start="2026-07-01T00:00Z", n=4, v=230.0), ctx, None)], "nothing wrong")
    with pytest.raises(AssertionError, match="no finding"):
        check_detector(DipDetector, quiet)
    sagging = Scenario([Step(readings(start="2026-07-01T00:00Z", n=4, at={1: {"v_min": 150.0}}), ctx, None)], "a sag")
    check_detector(DipDetector, sagging)
    inputs = copy.deepcopy(sagging.steps[0].inputs)
    _, per_step = run(DipDetector(), sagging)
    assert sagging.steps[0].inputs == inputs
    assert json.dumps(per_step[0][0]["evidence"]) == '{"v_min": 150.0, "dips": 1}'


# ------------------------------------------------------------------------------ gridwatch detectors list

def test_detectors_list_shows_every_registered_detector_and_parameter(capsys):
    from gridwatch.cli import main

    assert main(["detectors", "list", "--json"]) == 0
    listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert set(listed) == set(REGISTERED)
    for name, cls in REGISTERED.items():
        assert listed[name]["kinds"] == list(cls.kinds) and listed[name]["detects"] == cls.detects
        assert [p["name"] for p in listed[name]["parameters"]] == [p.name for p in cls.parameters()]
        assert all(p["help"] for p in listed[name]["parameters"]), f"{name}: a parameter without help"
    assert main(["detectors", "list"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["NAME", "KEY", "INPUT", "KINDS", "DETECTS"]
    for name, cls in REGISTERED.items():
        assert f"{name} ({cls.__module__}:{cls.__qualname__})" in text
        for p in cls.parameters():
            assert f"  {p.name} " in text
