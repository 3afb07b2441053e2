"""Steady-state voltage bands of the standards a customer's supply is judged against.

Figures from GB/T 12325-2008, EN 50160 and ANSI C84.1 (see README, "Voltage standards"). A profile is
chosen per customer from the nominal voltage; ``band`` is the normal band of the standard, in volts.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Profile", "PROFILES", "profile_for"]


@dataclass(frozen=True)
class Profile:
    name: str
    nominal: float
    low_pct: float   # lower limit as a fraction below nominal, e.g. 0.10 for -10 %
    high_pct: float  # upper limit as a fraction above nominal

    @property
    def low(self) -> float:
        return round(self.nominal * (1 - self.low_pct), 2)

    @property
    def high(self) -> float:
        return round(self.nominal * (1 + self.high_pct), 2)

    def classify(self, volts: float) -> str:
        """'under', 'over' or 'normal' against the band."""
        if volts < self.low:
            return "under"
        if volts > self.high:
            return "over"
        return "normal"


PROFILES = {
    # China, 220 V single-phase: +7 % / -10 %  -> 198.0 .. 235.4 V
    "GB/T 12325": Profile("GB/T 12325", 220.0, 0.10, 0.07),
    # Europe, 230 V: +/-10 % for 95 % of the 10-minute means of a week -> 207 .. 253 V
    "EN 50160": Profile("EN 50160", 230.0, 0.10, 0.10),
    # USA, 120 V service: Range A 114 .. 126 V
    "ANSI C84.1 Range A": Profile("ANSI C84.1 Range A", 120.0, 0.05, 0.05),
}

_BY_NOMINAL = {220: "GB/T 12325", 230: "EN 50160", 120: "ANSI C84.1 Range A"}


def profile_for(nominal_voltage: float) -> Profile:
    """The standard profile for a customer's nominal voltage.

    220 V -> GB/T 12325, 230 V -> EN 50160, 120 V -> ANSI C84.1 Range A. Other nominal voltages get a
    +/-10 % band around their own nominal (named "generic +/-10 %"), so no customer is left unjudged.
    """
    name = _BY_NOMINAL.get(int(round(nominal_voltage)))
    if name is not None:
        return PROFILES[name]
    return Profile("generic +/-10 %", float(nominal_voltage), 0.10, 0.10)
