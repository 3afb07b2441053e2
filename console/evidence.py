"""An alert's evidence as a chart: server-rendered SVG, no script, every text escaped.

Two shapes of ``alert["evidence"]`` are drawn:

* voltage alerts, ``evidence.trace``::

      {"unit": "V", "standard": "EN 50160", "nominal": 230, "band": [207.0, 253.0], "meter_id": "M…",
       "points": [[ts, v_avg, v_min, v_max], ...]}          # ts RFC 3339 or epoch seconds; values nullable

  the v_avg line with a light min/max envelope, over the shaded band with its limits labelled;

* bill alerts, ``evidence.series``::

      {"unit": "kWh", "currency": "EUR", "days": [[date, kwh], ...], "previous": [[date, kwh], ...],
       "forecast": [[date, yhat, lower, upper], ...]}        # previous optional

  bars of the actual daily use, the forecast line with its interval shaded, and the previous cycle as a
  grey line aligned on the day of the cycle.

:func:`chart_kind` says which one an alert has (None: nothing to draw); :func:`render` returns the SVG text.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from html import escape
from typing import Any

from console.model import parse_time

__all__ = ["chart_kind", "render", "EvidenceError"]

WIDTH, HEIGHT = 760, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 48, 56

# colours (also readable in print): band green, measured blue, envelope light blue, forecast orange
BAND_FILL, BAND_EDGE = "#e3f4e1", "#3c8d3a"
LINE, ENVELOPE = "#1f5fbf", "#c9dbf5"
BAR, PREVIOUS = "#7ea7e0", "#9a9a9a"
FORECAST, INTERVAL = "#d9731a", "#fbe2cb"
AXIS, GRID, TEXT = "#444444", "#e6e6e6", "#222222"


class EvidenceError(ValueError):
    """The alert has no evidence series that can be drawn."""


def _t(value: Any) -> str:
    """Text for an SVG element or attribute: XML-escaped (& < > " ')."""
    return escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
    return float(value) if math.isfinite(value) else None


def _trace(alert: dict) -> dict | None:
    trace = (alert.get("evidence") or {}).get("trace")
    if isinstance(trace, dict) and isinstance(trace.get("points"), list):
        if any(isinstance(p, (list, tuple)) and len(p) >= 2 and parse_time(p[0]) is not None
               and _num(p[1]) is not None for p in trace["points"]):
            return trace
    return None


def _series(alert: dict) -> dict | None:
    series = (alert.get("evidence") or {}).get("series")
    if isinstance(series, dict) and isinstance(series.get("days"), list):
        if any(isinstance(d, (list, tuple)) and len(d) >= 2 and _day(d[0]) is not None for d in series["days"]):
            return series
    return None


def chart_kind(alert: dict | None) -> str | None:
    """``"trace"`` (voltage), ``"series"`` (daily use and forecast) or None when there is nothing to draw."""
    if not isinstance(alert, dict) or not isinstance(alert.get("evidence"), dict):
        return None
    if _trace(alert) is not None:
        return "trace"
    if _series(alert) is not None:
        return "series"
    return None


def _day(value: Any) -> date | None:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


class _Canvas:
    def __init__(self, title: str, subtitle: str | None = None):
        self.parts: list[str] = []
        self.title = title
        self.subtitle = subtitle
        self.x0, self.x1 = LEFT, WIDTH - RIGHT
        self.y0, self.y1 = HEIGHT - BOTTOM, TOP  # y0 is the bottom of the plot

    def add(self, text: str) -> None:
        self.parts.append(text)

    def svg(self, description: str) -> str:
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
                f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="t d" '
                f'font-family="sans-serif" font-size="11" fill="{TEXT}">')
        title = (f'<title id="t">{_t(self.title)}</title><desc id="d">{_t(description)}</desc>'
                 f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>'
                 f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{_t(self.title)}</text>')
        if self.subtitle:
            title += f'<text x="{LEFT}" y="36" fill="#555555">{_t(self.subtitle)}</text>'
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + head + title + "".join(self.parts) + "</svg>\n"

    def y_axis(self, ticks: list[float], scale, unit: str) -> None:
        for v in ticks:
            y = scale(v)
            self.add(f'<line x1="{self.x0}" x2="{self.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
                     f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_t(_fmt(v))}</text>')
        self.add(f'<text x="14" y="{(self.y0 + self.y1) / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(self.y0 + self.y1) / 2:.1f})">{_t(unit)}</text>')

    def frame(self) -> None:
        self.add(f'<line x1="{self.x0}" x2="{self.x1}" y1="{self.y0}" y2="{self.y0}" stroke="{AXIS}"/>'
                 f'<line x1="{self.x0}" x2="{self.x0}" y1="{self.y0}" y2="{self.y1}" stroke="{AXIS}"/>')

    def legend(self, items: list[tuple[str, str, str]]) -> None:
        """``(kind, colour, label)`` with kind line | area | bar, along the bottom."""
        x, y = self.x0, HEIGHT - 10
        for kind, colour, label in items:
            if kind == "line":
                self.add(f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="2"/>')
            else:
                self.add(f'<rect x="{x}" y="{y - 10}" width="18" height="10" fill="{colour}"/>')
            self.add(f'<text x="{x + 24}" y="{y}">{_t(label)}</text>')
            x += 34 + 6.5 * len(label)


def _polyline(points: list[tuple[float, float] | None], colour: str, width: float = 1.6,
              dash: str | None = None) -> str:
    """Polylines through the points, broken wherever a point is None (a missing value)."""
    out, run = [], []
    extra = f' stroke-dasharray="{dash}"' if dash else ""

    def flush():
        if len(run) == 1:
            x, y = run[0]
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.8" fill="{colour}"/>')
        elif run:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="{width}"'
                       f' stroke-linejoin="round"{extra}/>')

    for p in points:
        if p is None:
            flush()
            run = []
        else:
            run.append(p)
    flush()
    return "".join(out)


def _band_polygons(upper: list[tuple[float, float] | None], lower: list[tuple[float, float] | None],
                   colour: str) -> str:
    """Filled areas between two point lists of equal length, broken where either is missing."""
    out, up, low = [], [], []

    def flush():
        if len(up) >= 2:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in up + list(reversed(low)))
            out.append(f'<polygon points="{pts}" fill="{colour}" stroke="none"/>')

    for u, lo in zip(upper, lower):
        if u is None or lo is None:
            flush()
            up, low = [], []
        else:
            up.append(u)
            low.append(lo)
    flush()
    return "".join(out)


def _time_label(epoch: float, with_date: bool) -> str:
    dt = datetime.fromtimestamp(epoch, timezone.utc)
    return dt.strftime("%m-%d %H:%M") if with_date else dt.strftime("%H:%M")


_TIME_STEPS = (300, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)


def _time_ticks(t0: float, t1: float, most: int = 8) -> list[float]:
    """Round UTC times (every 5 min ... every week) between t0 and t1, at most ``most`` of them."""
    step = next((s for s in _TIME_STEPS if (t1 - t0) / s <= most), _TIME_STEPS[-1])
    first = math.ceil(t0 / step) * step
    return [float(t) for t in range(int(first), int(t1) + 1, step)]


def _title(alert: dict, what: str) -> str:
    scope = alert.get("scope") or {}
    where = f"{scope.get('level')} {scope.get('id')}" if scope.get("level") else "unknown scope"
    return f"{alert.get('kind') or 'alert'} at {where}: {what}"


def _render_trace(alert: dict, trace: dict) -> str:
    rows = []
    for p in trace.get("points") or []:
        if not isinstance(p, (list, tuple)) or len(p) < 2:
            continue
        ts = parse_time(p[0])
        if ts is None:
            continue
        vals = [_num(p[i]) if i < len(p) else None for i in (1, 2, 3)]
        rows.append((ts, *vals))
    rows.sort(key=lambda r: r[0])
    unit = str(trace.get("unit") or "V")
    band = trace.get("band") if isinstance(trace.get("band"), (list, tuple)) else None
    low = _num(band[0]) if band and len(band) >= 2 else None
    high = _num(band[1]) if band and len(band) >= 2 else None
    nominal = _num(trace.get("nominal"))
    values = [v for r in rows for v in r[1:] if v is not None] + [v for v in (low, high, nominal) if v is not None]
    vmin, vmax = min(values), max(values)
    pad = max(1.0, (vmax - vmin) * 0.08)
    vmin, vmax = vmin - pad, vmax + pad
    t0, t1 = rows[0][0], rows[-1][0]
    if t1 <= t0:
        t0, t1 = t0 - 450, t1 + 450

    standard = trace.get("standard")
    sub = " · ".join(str(x) for x in (
        f"meter {trace['meter_id']}" if trace.get("meter_id") else None,
        standard, f"nominal {_fmt(nominal)} {unit}" if nominal is not None else None,
        f"started {alert.get('started_at')}" if alert.get("started_at") else None) if x)
    c = _Canvas(_title(alert, f"voltage ({unit})"), sub or None)

    def sx(t: float) -> float:
        return c.x0 + (t - t0) / (t1 - t0) * (c.x1 - c.x0)

    def sy(v: float) -> float:
        return c.y0 - (v - vmin) / (vmax - vmin) * (c.y0 - c.y1)

    c.y_axis(_nice_ticks(vmin, vmax), sy, unit)
    if low is not None and high is not None:
        c.add(f'<rect x="{c.x0}" y="{sy(high):.1f}" width="{c.x1 - c.x0}" height="{max(0.0, sy(low) - sy(high)):.1f}"'
              f' fill="{BAND_FILL}"/>')
    for value, label in ((high, "high"), (low, "low")):
        if value is not None:
            y = sy(value)
            c.add(f'<line x1="{c.x0}" x2="{c.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{BAND_EDGE}" '
                  f'stroke-dasharray="5 3"/>'
                  f'<text x="{c.x1 - 4}" y="{y - 4:.1f}" text-anchor="end" fill="{BAND_EDGE}">'
                  f'{_t(f"{label} limit {value:.1f} {unit}")}</text>')
    if nominal is not None:
        y = sy(nominal)
        c.add(f'<line x1="{c.x0}" x2="{c.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{BAND_EDGE}" '
              f'stroke-dasharray="1 3"/>')
    upper = [(sx(r[0]), sy(r[3])) if r[3] is not None else None for r in rows]
    lower = [(sx(r[0]), sy(r[2])) if r[2] is not None else None for r in rows]
    c.add(_band_polygons(upper, lower, ENVELOPE))
    c.add(_polyline([(sx(r[0]), sy(r[1])) if r[1] is not None else None for r in rows], LINE, 2.0))
    started = parse_time(alert.get("started_at"))
    if started is not None and t0 <= started <= t1:
        x = sx(started)
        c.add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{c.y0}" y2="{c.y1}" stroke="#b22222" stroke-dasharray="3 3"/>'
              # at the foot of its line, left of it: the band's limit labels sit at the top right
              f'<text x="{x - 3:.1f}" y="{c.y0 - 4}" fill="#b22222" text-anchor="end">started</text>')
    # time axis, UTC
    with_date = datetime.fromtimestamp(t0, timezone.utc).date() != datetime.fromtimestamp(t1, timezone.utc).date()
    for t in _time_ticks(t0, t1):
        x = sx(t)
        c.add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{c.y0}" y2="{c.y0 + 4}" stroke="{AXIS}"/>'
              f'<text x="{x:.1f}" y="{c.y0 + 16}" text-anchor="middle">{_t(_time_label(t, with_date))}</text>')
    c.add(f'<text x="{c.x1}" y="{c.y0 + 30}" text-anchor="end" fill="#555555">time (UTC)</text>')
    c.frame()
    c.legend([("line", LINE, "average voltage"), ("area", ENVELOPE, "min – max"),
              ("area", BAND_FILL, f"allowed band ({standard})" if standard else "allowed band")])
    desc = (f"{len(rows)} readings from {_time_label(t0, True)} to {_time_label(t1, True)} UTC"
            + (f"; band {low:.1f} to {high:.1f} {unit}" if low is not None and high is not None else ""))
    return c.svg(desc)


def _render_series(alert: dict, series: dict) -> str:
    unit = str(series.get("unit") or "kWh")
    days = [(d, _num(r[1])) for r in series.get("days") or [] if isinstance(r, (list, tuple)) and len(r) >= 2
            for d in [_day(r[0])] if d is not None]
    days.sort(key=lambda r: r[0])
    forecast = []
    for r in series.get("forecast") or []:
        if isinstance(r, (list, tuple)) and len(r) >= 2 and _day(r[0]) is not None:
            forecast.append((_day(r[0]), *[_num(r[i]) if i < len(r) else None for i in (1, 2, 3)]))
    forecast.sort(key=lambda r: r[0])
    previous = [_num(r[1]) for r in series.get("previous") or [] if isinstance(r, (list, tuple)) and len(r) >= 2]

    first = min([d for d, _ in days] + [f[0] for f in forecast])
    last = max([d for d, _ in days] + [f[0] for f in forecast])
    n_days = max((last - first).days + 1, len(previous), 1)
    values = [v for _, v in days if v is not None] + [v for f in forecast for v in f[1:] if v is not None] \
        + [v for v in previous if v is not None]
    vmax = max(values + [0.0]) * 1.1 or 1.0
    currency = series.get("currency")
    sub = " · ".join(x for x in (f"daily use ({unit})", f"bill in {currency}" if currency else None,
                                f"{days[0][0].isoformat()} to {last.isoformat()}") if x)
    c = _Canvas(_title(alert, "daily use and forecast"), sub)
    slot = (c.x1 - c.x0) / n_days

    def sx(day_index: float) -> float:  # centre of the day's slot
        return c.x0 + (day_index + 0.5) * slot

    def sy(v: float) -> float:
        return c.y0 - v / vmax * (c.y0 - c.y1)

    c.y_axis(_nice_ticks(0.0, vmax), sy, unit)
    interval_up = [(sx((d - first).days), sy(up)) if up is not None and lo is not None else None
                   for d, _, lo, up in forecast]
    interval_lo = [(sx((d - first).days), sy(lo)) if up is not None and lo is not None else None
                   for d, _, lo, up in forecast]
    c.add(_band_polygons(interval_up, interval_lo, INTERVAL))
    bar_w = max(1.0, slot * 0.7)
    for d, v in days:
        if v is None:
            continue
        x = sx((d - first).days) - bar_w / 2
        c.add(f'<rect x="{x:.1f}" y="{sy(v):.1f}" width="{bar_w:.1f}" height="{max(0.0, c.y0 - sy(v)):.1f}" '
              f'fill="{BAR}"><title>{_t(f"{d.isoformat()}: {v:.2f} {unit}")}</title></rect>')
    if previous:
        c.add(_polyline([(sx(i), sy(v)) if v is not None else None for i, v in enumerate(previous)],
                        PREVIOUS, 1.4, "4 3"))
    c.add(_polyline([(sx((d - first).days), sy(y)) if y is not None else None for d, y, _, _ in forecast],
                    FORECAST, 2.0))
    step = max(1, math.ceil(n_days / 10))
    for i in range(0, n_days, step):
        day = date.fromordinal(first.toordinal() + i)
        x = sx(i)
        c.add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{c.y0}" y2="{c.y0 + 4}" stroke="{AXIS}"/>'
              f'<text x="{x:.1f}" y="{c.y0 + 16}" text-anchor="middle">{_t(day.strftime("%m-%d"))}</text>')
    c.frame()
    legend = [("bar", BAR, f"actual {unit} per day"), ("line", FORECAST, "forecast"),
              ("area", INTERVAL, "forecast interval")]
    if previous:
        legend.append(("line", PREVIOUS, "previous cycle"))
    c.legend(legend)
    total = sum(v for _, v in days if v is not None)
    desc = f"{len(days)} days measured ({total:.1f} {unit}), {len(forecast)} days forecast"
    return c.svg(desc)


def render(alert: dict) -> str:
    """The alert's evidence chart as SVG text; EvidenceError when it has none (see :func:`chart_kind`)."""
    kind = chart_kind(alert)
    if kind == "trace":
        return _render_trace(alert, _trace(alert))
    if kind == "series":
        return _render_series(alert, _series(alert))
    raise EvidenceError(f"alert {alert.get('alert_id') if isinstance(alert, dict) else alert!r} has no "
                        "evidence series to draw")
