"""The detector API: what a detector is, what it receives and what it returns.

A detector is a small object with

- a **configuration** (``Config``, a frozen dataclass whose every field has a default and a ``help`` in its
  metadata) that never changes while it runs;
- **state** per key (a meter, a feeder or a customer; ``key``), a plain JSON-serialisable dict the worker
  keeps in a Faust table and the backtest keeps in memory. ``new_state()`` makes the first one;
- ``score(item, ctx)``: a pure function of one input item (a reading, an event, a day of usage) — how
  abnormal is it, with no memory and no side effects;
- ``decide(state, scored, ctx) -> (new_state, findings)``: the memory — turns a run of scores into findings;
- ``process(state, inputs, ctx)``: score each input in event-time order, then decide. Override only when
  scoring needs the neighbours of an item;
- ``advance(state, watermark, ctx)``: event time moved on to ``watermark`` with no new input for this key
  (how an outage detector notices meters that went silent). Most detectors need not override it.

``key`` and ``input`` together say which stage runs it (:data:`STAGE_PAIRS`, ``detectors.pipeline``): a
meter's readings, a feeder's meter events, or a customer's days of usage. There is no stage for any other
pair, so the registry refuses one rather than let a detector register and never run.

A detector whose model is too costly to fit in ``process`` is a :class:`Fittable`: the stage asks it for a
``fit_request`` after ``process``, runs its ``fit`` wherever it likes (inline, or in a process pool), and
hands the result back through ``apply_fit``. A feeder detector whose decisions say which meters have no
supply (the outage detector) is a :class:`Muting` one: the feeder stage asks its ``out_meters`` which meters'
voltage alerts to mute. These optional hooks are declared here and nowhere else: the registry refuses a
detector that defines one without its base class, since no stage would call it.

Rules every detector keeps (``detectors.testing.check_detector`` checks them for each registered one):
inputs and state are never mutated (return a new state); only event time is used, never the wall clock;
the same inputs give the same findings; missing or null fields are tolerated; duplicated and out-of-order
inputs do not produce extra findings; the class has a docstring.

A **Finding** is a dict::

    {"kind": "sag", "status": "abnormal" | "normal" | "event" | "report",
     "meter_id": "M000001", "started_at": <epoch s>, "detected_at": <epoch s>, "at": <epoch s>,
     "severity": "info" | "warning" | "critical",   # optional
     "evidence": {...}}                               # optional, JSON-ready

``abnormal``/``normal`` open and close a condition, ``event`` is a condition that starts and ends at once
(a sag), ``report`` is a figure with no alert attached (a week's voltage compliance). The worker turns
findings into alerts (see ``detectors.topology`` and ``detectors.outage``); detectors do not.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

from .standards import Profile

__all__ = ["Detector", "Fittable", "Muting", "Context", "Param", "KEYS", "INPUTS", "STAGE_PAIRS", "FIT_PAIRS",
           "MUTE_PAIRS",
           "METER_READINGS", "FEEDER_EVENTS", "CUSTOMER_DAILY", "FINDING_STATUSES", "NoConfig", "copy_state"]

#: what one state belongs to
KEYS = ("meter", "feeder", "customer")
#: what ``process`` receives: Reading objects, MeterEvent objects, or days of usage (dicts, detectors.usage)
INPUTS = ("readings", "events", "daily")

METER_READINGS = ("meter", "readings")
FEEDER_EVENTS = ("feeder", "events")
CUSTOMER_DAILY = ("customer", "daily")
#: the (key, input) pairs the stages of ``detectors.pipeline`` run, each with the stage that runs it; the
#: stages select their detectors by these pairs, and the registry refuses a detector with any other pair
STAGE_PAIRS: dict[tuple[str, str], str] = {
    METER_READINGS: "MeterStage: every batch of a meter's readings",
    FEEDER_EVENTS: "FeederStage: a feeder's meter events and its event time (one such detector runs)",
    CUSTOMER_DAILY: "CustomerStage: a customer's closed days of usage, with model fits",
}
#: the pairs whose stage runs model fits (:class:`Fittable`)
FIT_PAIRS = frozenset({CUSTOMER_DAILY})
#: the pairs whose stage asks which meters are out and mutes their voltage alerts (:class:`Muting`)
MUTE_PAIRS = frozenset({FEEDER_EVENTS})
FINDING_STATUSES = ("abnormal", "normal", "event", "report")


@dataclass(frozen=True)
class NoConfig:
    """A detector without parameters."""


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    help: str


@dataclass(frozen=True)
class Context:
    """What a detector may know about its key besides the inputs; read-only.

    ``customer`` is the customers record (see the contract) and ``profile`` the voltage standard it is
    judged against. ``members`` (feeder detectors) maps meter_id -> {"transformer_id", "customer_id"};
    ``last_seen`` maps meter_id -> event time of its newest reading, ``gaps`` meter_id -> recent
    silences ``[[last reading before, first reading after], ...]``, and ``cadence`` meter_id -> the seconds
    its newest message spanned (one reading: its interval; an hourly array of four: 3600), i.e. how long
    until its next message is due.
    """
    meter_id: str | None = None
    customer: dict | None = None
    profile: Profile | None = None
    feeder_id: str | None = None
    members: dict = field(default_factory=dict)
    last_seen: dict = field(default_factory=dict)
    gaps: dict = field(default_factory=dict)
    cadence: dict = field(default_factory=dict)


class Detector:
    """Base class; see the module docstring. Subclasses set the class attributes below."""

    #: registry name: lower case, digits and ``_``
    name: ClassVar[str] = ""
    #: one line: what it finds, for ``gridwatch detectors list``
    detects: ClassVar[str] = ""
    key: ClassVar[str] = "meter"
    input: ClassVar[str] = "readings"
    #: the finding kinds it can emit
    kinds: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type] = NoConfig

    def __init__(self, config: Any = None, **overrides: Any):
        cfg = config if config is not None else self.Config()
        self.config = dataclasses.replace(cfg, **overrides) if overrides else cfg

    @classmethod
    def parameters(cls) -> list[Param]:
        out = []
        for f in dataclasses.fields(cls.Config):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out.append(Param(f.name, default, f.metadata.get("help", "")))
        return out

    def new_state(self) -> dict:
        return {}

    def score(self, item: Any, ctx: Context) -> Any:
        return None

    def decide(self, state: dict, scored: list[tuple[Any, Any]], ctx: Context) -> tuple[dict, list[dict]]:
        return state, []

    def process(self, state: dict | None, inputs: Iterable[Any], ctx: Context) -> tuple[dict, list[dict]]:
        st = copy_state(state) if state is not None else self.new_state()
        items = sorted(inputs, key=_ts)
        return self.decide(st, [(item, self.score(item, ctx)) for item in items], ctx)

    def advance(self, state: dict | None, watermark: int, ctx: Context) -> tuple[dict, list[dict]]:
        return (copy_state(state) if state is not None else self.new_state()), []


def copy_state(value: Any) -> Any:
    """A deep copy of a JSON-shaped state (dicts, lists, tuples of numbers, strings, None): what
    ``copy.deepcopy`` gives for it, at a fraction of the cost (no memo: a state read from its table shares
    nothing). Anything else inside is copied by ``copy.deepcopy``."""
    t = type(value)
    if t is dict:
        return {k: v if type(v) in _ATOMS else copy_state(v) for k, v in value.items()}
    if t is list:
        return [v if type(v) in _ATOMS else copy_state(v) for v in value]
    if t in _ATOMS:
        return value
    if t is tuple:
        return tuple(copy_state(v) for v in value)
    return copy.deepcopy(value)


_ATOMS = frozenset((int, float, str, bool, type(None)))


class Fittable(Detector):
    """Base of a detector with a model fitted outside ``process`` (a Prophet fit costs ~130 ms of CPU: it
    must not run on the worker's event loop). After each ``process`` the stage calls:

    - ``fit_request(state, ctx)``: a picklable payload when a fit is due for this key, else ``None``. Cheap,
      no model work; decide here how often fits happen (the bill detector: once per customer per cycle).
    - ``fit(payload)``: the fit itself, a ``staticmethod`` that depends on the payload alone, so the worker
      can run it in another process (it is pickled by name: define it in the class body, not as a lambda).
      Its result must be picklable too; a failed fit returns a result saying so rather than raising.
    - ``apply_fit(state, result, ctx) -> (new_state, findings)``: store the result and decide with it. The
      state may have moved on while the fit ran, so a result that no longer applies is ignored.

    Only stages in :data:`FIT_PAIRS` run fits; the registry refuses a Fittable with another (key, input)
    and one that does not define all three, and ``detectors.testing`` runs them in the contract suite.
    """

    def fit_request(self, state: dict | None, ctx: Context) -> Any | None:
        raise NotImplementedError

    @staticmethod
    def fit(payload: Any) -> Any:
        raise NotImplementedError

    def apply_fit(self, state: dict | None, result: Any, ctx: Context) -> tuple[dict, list[dict]]:
        raise NotImplementedError


#: the hooks a :class:`Fittable` defines
FIT_HOOKS = ("fit_request", "fit", "apply_fit")


class Muting(Detector):
    """Base of a feeder detector whose decisions say which meters have no supply (the outage detector): a
    meter without supply is that detector's alert, and must not also raise an undervoltage or a sag. After
    each ``advance`` the feeder stage (``detectors.pipeline.FeederStage``) hands the voltage correlator:

    - ``out_meters(state, t) -> set[str]``: the meters out at event time ``t`` (any ``t`` up to the watermark
      just decided; an outage not over yet extends past it), as decided so far. A function of the state
      alone, which it leaves as it found it; ``None`` (no state yet) has no meter out.

    Only stages in :data:`MUTE_PAIRS` ask; the registry refuses a Muting detector with another (key, input)
    and one that does not define ``out_meters``, and ``detectors.testing`` checks it in the contract suite.
    """

    def out_meters(self, state: dict | None, t: int) -> set[str]:
        raise NotImplementedError


#: the hooks a :class:`Muting` detector defines
MUTE_HOOKS = ("out_meters",)


def _ts(item: Any) -> Any:
    return item["ts"] if isinstance(item, dict) else item.ts


def param(default: Any, help: str) -> Any:
    """A ``Config`` field with its help text: ``min_duration_s: int = param(1800, "...")``."""
    return field(default=default, metadata={"help": help})


__all__.append("param")
