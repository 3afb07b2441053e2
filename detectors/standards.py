"""Voltage bands of the standards a customer's supply is judged against, and the IEEE 1159 magnitude scale.

Figures from GB/T 12325-2008, EN 50160, ANSI C84.1 and IEEE 1159 (see README, "Voltage standards"). A
:class:`Profile` is chosen per customer: the customer record may name one (``voltage_standard``, one of
:data:`PROFILES`), otherwise the nominal voltage picks it (:func:`profile_for`, :func:`profile_for_customer`).

- ``band`` (``low`` .. ``high``) is the standard's normal band, in volts;
- ``outer_low`` .. ``outer_high`` are limits no 10-minute mean may leave, where the standard has them
  (EN 50160: +10 % / -15 %); None elsewhere;
- ``weekly_share`` is the share of a week's 10-minute means that must lie in the band, where the standard
  sets one (EN 50160: 95 %); None elsewhere.

:func:`ieee1159` names a per-unit magnitude by the IEEE 1159 categories of short-duration RMS variation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

__all__ = ["Profile", "PROFILES", "profile_for", "profile_for_customer", "profile_for_context", "ieee1159",
           "SAG_PU", "SWELL_PU", "INTERRUPTION_PU", "SWELL_MAX_PU"]

#: IEEE 1159 magnitude limits, per unit of nominal
INTERRUPTION_PU = 0.1
SAG_PU = 0.9
SWELL_PU = 1.1
SWELL_MAX_PU = 1.8


@dataclass(frozen=True)
class Profile:
    """One standard's limits for one nominal voltage; percentages are fractions (0.10 for 10 %)."""
    name: str
    nominal: float
    low_pct: float   # lower limit as a fraction below nominal, e.g. 0.10 for -10 %
    high_pct: float  # upper limit as a fraction above nominal
    outer_low_pct: float | None = None   # EN 50160: every 10-minute mean >= nominal x (1 - 0.15)
    outer_high_pct: float | None = None  # EN 50160: every 10-minute mean <= nominal x (1 + 0.10)
    weekly_share: float | None = None    # EN 50160: 95 % of a week's 10-minute means in the band

    # The limits in volts, computed once per profile (a profile is immutable): the detectors compare every
    # reading with them, several times each.
    @cached_property
    def low(self) -> float:
        return round(self.nominal * (1 - self.low_pct), 2)

    @cached_property
    def high(self) -> float:
        return round(self.nominal * (1 + self.high_pct), 2)

    @cached_property
    def outer_low(self) -> float | None:
        return None if self.outer_low_pct is None else round(self.nominal * (1 - self.outer_low_pct), 2)

    @cached_property
    def outer_high(self) -> float | None:
        return None if self.outer_high_pct is None else round(self.nominal * (1 + self.outer_high_pct), 2)

    def classify(self, volts: float) -> str:
        """'under', 'over' or 'normal' against the band."""
        if volts < self.low:
            return "under"
        if volts > self.high:
            return "over"
        return "normal"

    def within_outer(self, volts: float) -> bool:
        """Inside the outer limits (always True for a standard without them)."""
        if self.outer_low is not None and volts < self.outer_low:
            return False
        if self.outer_high is not None and volts > self.outer_high:
            return False
        return True

    def pu(self, volts: float) -> float:
        """``volts`` per unit of the nominal voltage."""
        return volts / self.nominal


PROFILES: dict[str, Profile] = {
    # China, 220 V single-phase: +7 % / -10 %  -> 198.0 .. 235.4 V
    "GB/T 12325": Profile("GB/T 12325", 220.0, 0.10, 0.07),
    # Europe, 230 V: +/-10 % (207 .. 253 V) for 95 % of the 10-minute means of a week, and every
    # 10-minute mean within +10 % / -15 % (195.5 .. 253 V)
    "EN 50160": Profile("EN 50160", 230.0, 0.10, 0.10, outer_low_pct=0.15, outer_high_pct=0.10,
                        weekly_share=0.95),
    # USA, 120 V service: Range A 114 .. 126 V (the normal supply)
    "ANSI C84.1 Range A": Profile("ANSI C84.1 Range A", 120.0, 0.05, 0.05),
    # USA, 120 V service: Range B 110 .. 127 V (tolerated when infrequent; outside it, prompt corrective action)
    "ANSI C84.1 Range B": Profile("ANSI C84.1 Range B", 120.0, 10 / 120, 7 / 120),
}

_BY_NOMINAL = {220: "GB/T 12325", 230: "EN 50160", 120: "ANSI C84.1 Range A"}


def profile_for(nominal_voltage: float, standard: str | None = None) -> Profile:
    """The standard profile for a customer: the one named ``standard``, else the one for its nominal voltage.

    220 V -> GB/T 12325, 230 V -> EN 50160, 120 V -> ANSI C84.1 Range A. Other nominal voltages get a
    +/-10 % band around their own nominal (named "generic +/-10 %"), so no customer is left unjudged.
    A ``standard`` that is not a key of :data:`PROFILES` raises ValueError.
    """
    if standard is not None:
        try:
            return PROFILES[standard]
        except KeyError:
            raise ValueError(f"unknown voltage standard {standard!r} (known: {', '.join(PROFILES)})") from None
    name = _BY_NOMINAL.get(int(round(nominal_voltage)))
    if name is not None:
        return PROFILES[name]
    return Profile("generic +/-10 %", float(nominal_voltage), 0.10, 0.10)


def profile_for_customer(customer: Mapping[str, Any]) -> Profile:
    """The profile of a ``customers`` record: its ``voltage_standard`` if set, else by ``nominal_voltage``."""
    return profile_for(customer["nominal_voltage"], customer.get("voltage_standard"))


def profile_for_context(ctx: Any) -> Profile:
    """A detector :class:`~detectors.api.Context`'s profile, else its customer's; ValueError with neither."""
    if ctx.profile is not None:
        return ctx.profile
    if ctx.customer is not None:
        return profile_for_customer(ctx.customer)
    raise ValueError("no voltage profile: the Context has neither a profile nor a customer")


def ieee1159(pu: float) -> str:
    """The IEEE 1159 magnitude category of a voltage in per unit of nominal.

    ``"interruption"`` below 0.1 pu, ``"sag"`` from 0.1 up to (not including) 0.9 pu, ``"swell"`` above
    1.1 up to 1.8 pu, ``"normal"`` otherwise. Only the magnitude is judged: whether it is a sag (0.5 cycle to
    1 minute) or a sustained undervoltage depends on its duration, which the caller knows. Magnitudes above
    1.8 pu lie outside the RMS-variation categories (they are transients, or bad values) and are "normal"
    on this scale.
    """
    if pu < INTERRUPTION_PU:
        return "interruption"
    if pu < SAG_PU:
        return "sag"
    if SWELL_PU < pu <= SWELL_MAX_PU:
        return "swell"
    return "normal"
