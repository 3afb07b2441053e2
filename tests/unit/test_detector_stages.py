"""The registry accepts only what the stages run: a (key, input) pair of ``detectors.api.STAGE_PAIRS``, and
the optional hooks declared through their base in ``detectors.api`` (``Fittable``: model fits; ``Muting``: the
meters out that the feeder stage mutes); the contract suite runs both. The meter stage builds the one status
message the worker and the ``Pipeline`` send the correlator."""

from __future__ import annotations

import copy

import pytest

from detectors import registry
from detectors.api import STAGE_PAIRS, Detector, Fittable, Muting
from detectors.outage import OutageDetector
from detectors.pipeline import CustomerStage, FeederStage, MeterStage, Pipeline, directory_entry
from detectors.topology import TransformerCorrelator
from detectors.testing import (CHECKS, check_detector, customer, daily_scenario, days, event_scenario, feeder,
                               readings)

REGISTERED = registry.load()


class MeanFitDetector(Fittable):
    """A day above 1.5 x the mean of the customer's first 28 days (the fitted model) is a ``bill_spike``."""

    name = "mean_fit"
    detects = "days far above the fitted mean"
    key = "customer"
    input = "daily"
    kinds = ("bill_spike",)

    def new_state(self) -> dict:
        return {"kwh": [], "last": None, "mean": None}

    def process(self, state, inputs, ctx):
        st = copy.deepcopy(state) if state is not None else self.new_state()
        out = []
        for d in sorted(inputs, key=lambda d: d["date"]):
            if d.get("kwh") is None or (st["last"] is not None and d["date"] <= st["last"]):
                continue
            st["last"] = d["date"]
            st["kwh"].append(d["kwh"])
            if st["mean"] is not None and d["kwh"] > 1.5 * st["mean"]:
                out.append({"kind": "bill_spike", "status": "event", "meter_id": ctx.customer["meter_id"],
                            "started_at": d["ts"], "detected_at": d["ts"], "at": d["ts"],
                            "evidence": {"kwh": d["kwh"], "mean": st["mean"]}})
        return st, out

    def fit_request(self, state, ctx):
        if state is None or state["mean"] is not None or len(state["kwh"]) < 28:
            return None
        return {"kwh": state["kwh"][:28]}

    @staticmethod
    def fit(payload):
        return {"mean": round(sum(payload["kwh"]) / len(payload["kwh"]), 6)}

    def apply_fit(self, state, result, ctx):
        st = copy.deepcopy(state)
        if st["mean"] is None:
            st["mean"] = result["mean"]
        return st, []


# ------------------------------------------------------------------------------ (key, input) pairs

def test_every_registered_detector_is_run_by_a_stage():
    pipe = Pipeline([cls() for cls in REGISTERED.values()])
    run = ([d.name for d in pipe.meter_stage.detectors] + [pipe.feeder_stage.outage.name]
           + [d.name for d in pipe.customer_stage.detectors])
    assert sorted(run) == sorted(REGISTERED)
    assert {(c.key, c.input) for c in REGISTERED.values()} == set(STAGE_PAIRS)


@pytest.mark.parametrize("key, input", [("feeder", "readings"), ("meter", "events"), ("customer", "readings"),
                                        ("meter", "daily")])
def test_a_pair_no_stage_runs_is_refused_naming_the_supported_ones(key, input):
    cls = type("Elsewhere", (MeanFitDetector if input == "daily" else Detector,), {
        "__doc__": "Runs nowhere.", "name": "elsewhere", "detects": "nothing", "kinds": ("sag",),
        "key": key, "input": input})
    with pytest.raises(registry.DetectorError) as exc:
        registry.validate(cls)
    assert str(exc.value) == (
        f"detector 'elsewhere': no stage runs key {key!r} with input {input!r}; the stages run "
        "meter/readings (MeterStage: every batch of a meter's readings), feeder/events (FeederStage: a "
        "feeder's meter events and its event time (one such detector runs)), customer/daily (CustomerStage: "
        "a customer's closed days of usage, with model fits)")


def test_two_feeder_event_detectors_are_refused_when_both_are_enabled(monkeypatch):
    outage = REGISTERED["outage"]
    second = type("Second", (outage,), {"__doc__": "Another outage detector.", "name": "second_outage"})
    monkeypatch.setattr(registry, "load", lambda: {**REGISTERED, "second_outage": second})
    with pytest.raises(registry.DetectorError, match="detector 'second_outage': only one feeder/events detector "
                                                     "runs, and 'outage' is enabled too"):
        registry.enabled("all")
    assert [d.name for d in registry.enabled("voltage,second_outage")] == ["voltage", "second_outage"]


# ------------------------------------------------------------------------------ the fit hooks

def test_a_fittable_detector_passes_the_contract_and_is_fitted_by_the_stage():
    check_detector(MeanFitDetector)
    stage = CustomerStage([MeanFitDetector()])
    cust = customer()
    states, records, requests = stage.process(None, days("2026-05-01", 28, 10.0, tz=cust["timezone"]), cust)
    assert records == [] and requests == [("mean_fit", {"kwh": [10.0] * 28})]
    result = stage.fit_function("mean_fit")(requests[0][1])
    states, records = stage.apply(states, "mean_fit", result, cust)
    assert states["mean_fit"]["mean"] == 10.0
    states, records, requests = stage.process(states, days("2026-05-29", 2, [10.0, 16.0], tz=cust["timezone"]),
                                              cust)
    assert [r["kind"] for r in records] == ["bill_spike"] and requests == []


def _fittable(**attrs):
    return type("Fits", (MeanFitDetector,), {"__doc__": "Fits.", "name": "fits", **attrs})


def _only_two_hooks():
    class Partial(Fittable):
        """Asks for fits but never takes them back."""
        name, detects, key, input, kinds = "partial", "x", "customer", "daily", ("bill_spike",)

        def fit_request(self, state, ctx):
            return None

        @staticmethod
        def fit(payload):
            return payload

    return Partial


def _a_local_fit():
    def fit(payload):
        return payload

    return _fittable(fit=staticmethod(fit))


#: (a class with a fit hook no stage would run, the words of its refusal)
REFUSED_FITS = [
    (type("Duck", (Detector,), {"__doc__": "Duck-typed fits.", "name": "duck", "detects": "x", "kinds": ("sag",),
                                "fit_request": lambda self, st, ctx: None, "apply_fit": lambda self, *a: a}),
     "defines fit_request, apply_fit but is not a detectors.api.Fittable, so no stage would call it"),
    (_fittable(key="meter", input="readings"), "is a Fittable, but the stage of meter/readings runs no model fits"),
    (_only_two_hooks(), "is a Fittable but does not define apply_fit"),
    (_fittable(fit=lambda self, payload: payload), "fit must be a staticmethod"),
    (_fittable(fit=staticmethod(lambda payload: payload)), "fit cannot be pickled by name"),
    (_a_local_fit(), "fit cannot be pickled by name"),
]


class NeverAsks(MeanFitDetector):
    """Never asks for its fit."""
    name = "never_asks"

    def fit_request(self, state, ctx):
        return None


class FindsOnEveryResult(MeanFitDetector):
    """Reports the fit as a finding each time one is applied."""
    name = "finds_on_every_result"

    def apply_fit(self, state, result, ctx):
        st, _ = super().apply_fit(state, result, ctx)
        return st, [{"kind": "bill_spike", "status": "event", "meter_id": ctx.customer["meter_id"],
                     "started_at": 0, "detected_at": 0, "at": 0}]


class SendsAGenerator(MeanFitDetector):
    """Its payload holds a generator, which cannot cross to a process pool."""
    name = "sends_a_generator"

    def fit_request(self, state, ctx):
        payload = super().fit_request(state, ctx)
        return None if payload is None else {**payload, "extra": (x for x in ())}


#: (a Fittable with a broken hook, the words the contract suite fails it with)
BROKEN_FITS = [
    (NeverAsks, "never asked for a fit"),
    (FindsOnEveryResult, "apply_fit() of a result already applied found again"),
    (SendsAGenerator, "a fit payload cannot be pickled"),
]


# ------------------------------------------------------------------------------ the meters-out hook; both hooks

def test_the_outage_detector_is_the_muting_one_and_keeps_its_rule():
    assert issubclass(REGISTERED["outage"], Muting)
    CHECKS["mutes"](REGISTERED["outage"])


def _feeder_detector(base, **attrs):
    return type("Feeds", (base,), {"__doc__": "Feeder events.", "name": "feeds", "detects": "x", "key": "feeder",
                                   "input": "events", "kinds": ("outage",), **attrs})


@pytest.mark.parametrize("cls, words", REFUSED_FITS + [
    (_feeder_detector(Detector, out_meters=lambda self, state, t: set()),
     "defines out_meters but is not a detectors.api.Muting, so no stage would call it"),
    (type("Metered", (OutageDetector,), {"__doc__": "On readings.", "name": "metered", "key": "meter",
                                         "input": "readings"}),
     "is a Muting, but the stage of meter/readings mutes no meters out (only the stage of feeder/events calls "
     "out_meters)"),
    (_feeder_detector(Muting), "is a Muting but does not define out_meters"),
])
def test_the_registry_refuses_hooks_no_stage_would_call(cls, words):
    with pytest.raises(registry.DetectorError) as exc:
        registry.validate(cls)
    assert str(exc.value).startswith(f"detector {cls.name!r}: ") and words in str(exc.value)


class NamesNobody(OutageDetector):
    """Decides outages but says no meter is ever out."""
    name = "names_nobody"

    def out_meters(self, state, t):
        return set()


class NamesStrangers(OutageDetector):
    """Names a meter of another feeder as out."""
    name = "names_strangers"

    def out_meters(self, state, t):
        return super().out_meters(state, t) | ({"M999999"} if state and state.get("decided") else set())


class AnswersAList(OutageDetector):
    """Returns its meters out as a list."""
    name = "answers_a_list"

    def out_meters(self, state, t):
        return sorted(super().out_meters(state, t))


class TouchesItsState(OutageDetector):
    """Remembers what it was asked in its state."""
    name = "touches_its_state"

    def out_meters(self, state, t):
        if state is not None:
            state["asked"] = t
        return super().out_meters(state, t)


@pytest.mark.parametrize("rule, cls, words", [("fits", cls, words) for cls, words in BROKEN_FITS] + [
    ("mutes", NamesNobody, "never named a meter out on the suite's inputs"),
    ("mutes", NamesStrangers, "names meters not of the feeder: ['M999999']"),
    ("mutes", AnswersAList, "not a set of meter ids"),
    ("mutes", TouchesItsState, "changed its state"),
])
def test_the_suite_catches_broken_hooks(rule, cls, words):
    with pytest.raises(AssertionError) as exc:
        CHECKS[rule](cls, daily_scenario() if rule == "fits" else event_scenario())
    msg = str(exc.value)
    assert f"detector {cls.name!r}" in msg and f"'{rule}'" in msg and words in msg


class GaspCounter(Detector):
    """Counts last gasps per feeder; says nothing about which meters are out."""
    name, detects, key, input, kinds = "gasp_counter", "last gasps", "feeder", "events", ("outage",)

    def process(self, state, inputs, ctx):
        return {"gasps": (state or {}).get("gasps", 0) + len(inputs)}, []


class AskingCorrelator(TransformerCorrelator):
    """The real correlator, noting which meters it is told to mute at each quarter hour it decides."""

    def __init__(self):
        super().__init__()
        self.muted: set[str] = set()

    def advance(self, state, watermark, muted=None):
        for t in range(watermark - 3600, watermark + 1, 900):
            self.muted |= muted(t)
        return super().advance(state, watermark, muted=muted)


@pytest.mark.parametrize("det, mutes", [(OutageDetector(), True), (GaspCounter(), False)])
def test_the_feeder_stage_mutes_only_the_meters_a_muting_detector_names(det, mutes):
    """Over a feeder's day with outages, the meters the outage detector has out are muted in the correlator; a
    feeder detector that is not a Muting one mutes nothing (and is not asked: it has no out_meters)."""
    registry.validate(type(det))
    stage = FeederStage([det], AskingCorrelator())
    f = feeder()
    fst, transformers = stage.new_feeder(f.feeder_id), {}
    for meter_id, member in f.members.items():
        tid = member["transformer_id"]
        fst, transformers[tid] = stage.member(fst, transformers.get(tid), {"meter_id": meter_id, **member,
                                                                          "partition": 0})
    steps = event_scenario().steps
    for step in steps:
        fst = stage.events(fst, step.inputs, transformers)
        fst, changed, _ = stage.advance(fst, transformers, step.watermark)
        transformers.update(changed)
    # no readings reach this stage here, so the meters out are the ones that sent a last gasp
    gasped = {e.meter_id for step in steps for e in step.inputs if e.type == "power_fail"}
    assert len(gasped) == 5
    assert stage.correlator.muted == (gasped if mutes else set())


# ------------------------------------------------------------------------------ the meter status message
def test_the_worker_and_the_pipeline_send_the_correlator_one_status_message(monkeypatch):
    """Both build it with ``MeterStage.status_message``: the same fields, the meter's transformer among them."""
    cust = customer()
    entry = directory_entry(cust)
    batch = readings(start="2026-07-01T00:00:00Z", n=4) + readings(start="2026-07-01T02:00:00Z", n=2, v=231.0)
    stage = MeterStage(registry.enabled())
    msg = stage.status_message(entry, batch, [], partition=3)
    assert msg == {"type": "status", "meter_id": "M000001", "customer_id": "C000001", "transformer_id": "T0001",
                   "partition": 3, "first_ts": batch[0].ts, "ts": batch[-1].ts, "interval_s": 900,
                   "gaps": [[batch[3].ts, batch[4].ts]], "transitions": [],
                   "profile": msg["profile"]}
    assert set(msg["profile"]) == {"name", "nominal", "low", "high"}
    assert stage.status_message(entry, batch, [], partition=3, ts=batch[-1].ts + 900)["ts"] == (
        batch[-1].ts + 900)  # the meter's newest reading, when an earlier batch went further

    seen = []
    real = FeederStage.status
    monkeypatch.setattr(FeederStage, "status", lambda self, tst, m: seen.append(m) or real(self, tst, m))
    pipe = Pipeline(registry.enabled())
    pipe.add_customer(cust)
    pipe.add_readings(batch)
    assert seen == [{**msg, "partition": 0}]
