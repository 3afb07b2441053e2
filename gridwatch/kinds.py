"""Every alert kind, declared once with its family and what the rest of gridwatch does with it.

A detector says which kinds it emits (``Detector.kinds``); what a kind *means* downstream — whether its end
is a message of its own, whether it waits out quiet hours, whether a silence may mute it, whether it counts
as a supply interruption — is declared here and nowhere else. Every list of kinds in the other packages is
derived from this table with :func:`having` (``notifiers.path.RESTORATION_KINDS``, ``notifiers.quiet``,
``notifiers.silences``, ``notifiers.tips``, ``detectors.topology``, ``history.reliability``, the console's
kind filter), so a new kind is one more :class:`Kind` below (tests/unit/test_kinds.py).

A kind that is not declared (a detector installed from another package) is valid and has none of the
properties: it is sent as a generic "supply problem" notice, at any hour, and a silence may mute it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Kind", "KINDS", "FAMILIES", "kind", "having", "names"]

#: what a kind is about
FAMILIES = ("voltage", "safety", "outage", "bill")


@dataclass(frozen=True)
class Kind:
    name: str
    family: str
    #: one line for people (the console's filter, ``gridwatch detectors list``)
    summary: str
    #: a hazard: never muted by a silence unless it says so (``include_safety``), exempt from the budget
    safety: bool = False
    #: not urgent: waits out the customer's quiet hours
    deferrable: bool = False
    #: its end is worth a message of its own ("power is back"): an outage is two messages per channel
    restoration: bool = False
    #: held while the customer is in an outage (released when it ends)
    held_during_outage: bool = False
    #: never sent to a customer who is in an outage (the outage explains it)
    inhibited_by_outage: bool = False
    #: its evidence carries the meters' voltage trace
    voltage_trace: bool = False
    #: decided over the whole transformer from its meters' findings (detectors/topology.py)
    correlated: bool = False
    #: a meter's finding stands only while its transformer's other meters are in band
    needs_calm_neighbours: bool = False
    #: a supply interruption in the reliability reports (SAIDI/SAIFI, history/reliability.py)
    interruption: bool = False
    #: a usage tip may go with its message (notifiers/tips.py)
    tip: bool = False
    #: an alert on the ``alerts`` topic (False: a message kind of the notification path only)
    alert: bool = True

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"kind {self.name!r}: family {self.family!r} is not one of {FAMILIES}")


_DEVIATION = dict(inhibited_by_outage=True, voltage_trace=True)

KINDS: tuple[Kind, ...] = (
    Kind("undervoltage", "voltage", "supply voltage below the standard's band for a sustained time",
         correlated=True, **_DEVIATION),
    Kind("overvoltage", "voltage", "supply voltage above the standard's band for a sustained time",
         correlated=True, **_DEVIATION),
    Kind("sag", "voltage", "short voltage dips (IEEE 1159 sags)", **_DEVIATION),
    Kind("swell", "voltage", "short voltage rises (IEEE 1159 swells)", **_DEVIATION),
    Kind("voltage_compliance", "voltage", "a week's voltage outside EN 50160 limits"),
    Kind("loose_neutral", "safety", "a loose neutral wire: voltage swinging both ways",
         safety=True, needs_calm_neighbours=True, **_DEVIATION),
    Kind("outage", "outage", "no supply: meters, a transformer or a feeder dark",
         safety=True, restoration=True, interruption=True),
    Kind("momentary_interruption", "outage", "supply lost and back within minutes", interruption=True),
    Kind("bill_spike", "bill", "this bill on course to be far above the customer's usual",
         deferrable=True, held_during_outage=True, tip=True),
    Kind("tip", "bill", "a usage tip sent on its own", deferrable=True, tip=True, alert=False),
)

_BY_NAME = {k.name: k for k in KINDS}
_FLAGS = {f.name for f in fields(Kind) if f.type in ("bool", bool)}
assert len(_BY_NAME) == len(KINDS), "a kind is declared twice"


def kind(name: str) -> Kind | None:
    """The declared kind, or None for one this table does not know (it then has none of the properties)."""
    return _BY_NAME.get(name)


def having(flag: str) -> tuple[str, ...]:
    """The names of the kinds with property ``flag`` set, in declaration order."""
    if flag not in _FLAGS:
        raise ValueError(f"no kind property {flag!r}; one of {sorted(_FLAGS)}")
    return tuple(k.name for k in KINDS if getattr(k, flag))


def names(family: str | None = None) -> tuple[str, ...]:
    """Every declared alert kind (of ``family``), in declaration order."""
    return tuple(k.name for k in KINDS if k.alert and (family is None or k.family == family))
