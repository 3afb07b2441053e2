"""Every detector, built-in or not, is found the same way: an entry point in the group
``gridwatch.detectors`` whose name is the detector's name and whose value is its class::

    [project.entry-points."gridwatch.detectors"]
    voltage = "detectors.voltage:VoltageDetector"

``load()`` imports and validates them all. A detector that cannot be imported or breaks the API raises
:class:`DetectorError` naming it, so the worker refuses to start instead of running without it. Breaking
the API includes a (key, input) pair no stage runs (``detectors.api.STAGE_PAIRS``) and the optional hooks
(model fits, meters out) outside their base class in ``detectors.api`` (``Fittable``, ``Muting``) or on a pair
whose stage does not call them: any of these would register and then silently never run.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import pickle
import re
from importlib.metadata import entry_points

from .api import (
    FEEDER_EVENTS, FIT_HOOKS, FIT_PAIRS, INPUTS, KEYS, MUTE_HOOKS, MUTE_PAIRS, STAGE_PAIRS, Detector, Fittable, Muting,
)

__all__ = ["ENTRY_POINT_GROUP", "DetectorError", "validate", "supported_pairs", "load", "enabled"]

ENTRY_POINT_GROUP = "gridwatch.detectors"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: every optional hook of detectors.api: its base class, its hooks, the pairs whose stage calls them, and what
#: another stage does not do
OPTIONAL_HOOKS = (
    (Fittable, FIT_HOOKS, FIT_PAIRS, "runs no model fits"),
    (Muting, MUTE_HOOKS, MUTE_PAIRS, "mutes no meters out"),
)


class DetectorError(Exception):
    """A detector that cannot be used; the message starts with its name."""


def validate(cls: object, name: str | None = None) -> type[Detector]:
    """Check a detector class against the API; returns it or raises :class:`DetectorError`."""
    label = name or getattr(cls, "name", None) or repr(cls)

    def fail(why: str):
        raise DetectorError(f"detector {label!r}: {why}")

    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        fail("is not a subclass of detectors.api.Detector")
    if not cls.name or not _NAME.match(cls.name):
        fail(f"name {cls.name!r} must be lower case letters, digits and '_'")
    if name is not None and cls.name != name:
        fail(f"is registered as {name!r} but its name is {cls.name!r}")
    if not (cls.__doc__ or "").strip():
        fail("has no docstring")
    if not cls.detects:
        fail("says nothing in 'detects'")
    if cls.key not in KEYS:
        fail(f"key {cls.key!r} is not one of {KEYS}")
    if cls.input not in INPUTS:
        fail(f"input {cls.input!r} is not one of {INPUTS}")
    pair = (cls.key, cls.input)
    if pair not in STAGE_PAIRS:
        fail(f"no stage runs key {cls.key!r} with input {cls.input!r}; the stages run {supported_pairs()}")
    _validate_hooks(cls, pair, fail)
    if not cls.kinds:
        fail("declares no finding kinds")
    if not dataclasses.is_dataclass(cls.Config):
        fail("Config is not a dataclass")
    for f in dataclasses.fields(cls.Config):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            fail(f"parameter {f.name!r} has no default")
    try:
        det = cls()
        state = det.new_state()
        if json.loads(json.dumps(state)) != state:
            fail("new_state() does not survive a JSON round trip")
    except DetectorError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here is the detector's, reported with its name
        fail(f"cannot be constructed with its defaults: {exc!r}")
    return cls


def supported_pairs() -> str:
    """The (key, input) pairs the stages run, for messages: ``meter/readings (MeterStage: ...), ...``."""
    return ", ".join(f"{k}/{i} ({stage})" for (k, i), stage in STAGE_PAIRS.items())


def _validate_hooks(cls: type[Detector], pair: tuple[str, str], fail) -> None:
    """A detector with an optional hook subclasses its base, on a pair whose stage calls it, and defines every
    hook of it; other detectors define none (``fit`` alone is too common a name to count)."""
    for base, hooks, pairs, what in OPTIONAL_HOOKS:
        if not issubclass(cls, base):
            stray = [h for h in hooks if h != "fit" and callable(getattr(cls, h, None))]
            if stray:
                fail(f"defines {', '.join(stray)} but is not a detectors.api.{base.__name__}, "
                     "so no stage would call it")
            continue
        if pair not in pairs:
            fail(f"is a {base.__name__}, but the stage of {pair[0]}/{pair[1]} {what} (only the stage of "
                 f"{', '.join(f'{k}/{i}' for k, i in sorted(pairs))} calls {', '.join(hooks)})")
        missing = [h for h in hooks if getattr(cls, h) is getattr(base, h)]
        if missing:
            fail(f"is a {base.__name__} but does not define {', '.join(missing)}")
    if issubclass(cls, Fittable):
        _validate_fit(cls, fail)


def _validate_fit(cls: type[Fittable], fail) -> None:
    """``fit`` can go to a process pool: a staticmethod, pickled by name."""
    if not isinstance(inspect.getattr_static(cls, "fit"), staticmethod):
        fail("fit must be a staticmethod: it runs on the payload alone, possibly in another process")
    try:
        same = pickle.loads(pickle.dumps(cls.fit)) is cls.fit
    except Exception:  # noqa: BLE001 - any failure means it cannot go to a process pool
        same = False
    if not same:
        fail("fit cannot be pickled by name (define it in the class body), so it cannot run in a process pool")


def load() -> dict[str, type[Detector]]:
    """name -> class of every installed detector, validated, in name order."""
    found: dict[str, type[Detector]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001
            raise DetectorError(f"detector {ep.name!r}: cannot be imported from {ep.value!r}: {exc!r}") from exc
        if ep.name in found and found[ep.name] is not cls:
            raise DetectorError(f"detector {ep.name!r}: registered twice ({ep.value!r})")
        found[ep.name] = validate(cls, ep.name)
    return dict(sorted(found.items()))


def enabled(spec: str | None = None) -> list[Detector]:
    """Instances of the detectors named in ``spec`` (comma separated; "all" or empty: every one)."""
    available = load()
    if not spec or spec.strip() == "all":
        names = list(available)
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        unknown = [n for n in names if n not in available]
        if unknown:
            raise DetectorError(f"detector {unknown[0]!r}: not installed (installed: {', '.join(available)})")
    chosen = [available[n]() for n in names]
    outage = [d.name for d in chosen if (d.key, d.input) == FEEDER_EVENTS]
    if len(outage) > 1:  # the feeder stage runs one: its decisions mute the voltage correlator
        raise DetectorError(f"detector {outage[1]!r}: only one feeder/events detector runs, and "
                            f"{outage[0]!r} is enabled too (choose one in GRIDWATCH_DETECTORS)")
    return chosen
