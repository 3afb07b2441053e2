"""Reliability indices after IEEE 1366, per feeder and for the system, per month and year to date.

From the history store: an *incident* is an ``outage`` or ``momentary_interruption`` alert that ended
(``resolved_at`` set) and was not an operator's "no fault"; its customers are every customer it ever named
(``alert_customers``: the union over all updates of the id, so an outage whose scope grew and shrank counts
each customer once), interrupted from its ``started_at`` to its ``resolved_at``. A customer's intervals that
overlap or touch (a parent outage and the child that kept some meters dark, an alert merged into a larger
one, a feeder alert over a transformer one) are ONE interruption from the first start to the last end.

An interruption of at most 5 minutes is *momentary* (IEEE 1366-2012; the outage detector reports those
under 3 minutes as ``momentary_interruption`` and longer ones as outages, so a 3-5 minute outage counts
here as momentary), a longer one *sustained*. An interruption belongs to the month (UTC) it started in and
to its customer's feeder in the customer directory. Incidents still open are not counted until they end.

With N_T the customers served (the directory's customers of that feeder, or all of them), N_i customers
interrupted (sustained), r_i their durations in minutes:

* SAIFI = Σ N_i / N_T, SAIDI = Σ r_i N_i / N_T (minutes), CAIDI = SAIDI / SAIFI, CMI = Σ r_i N_i;
* MAIFI = momentary customer interruptions / N_T;
* CEMI-n = customers with more than n sustained interruptions in the period / N_T.

**Major event days (2.5 β).** A day (UTC) is a major event day when its SAIDI exceeds
T_MED = exp(α + 2.5 β), α and β the mean and (sample) standard deviation of ln(SAIDI/day) over the days of
the five years before the reporting year whose SAIDI/day is not zero. It is applied only when at least a
year of such history exists; the report then gives every index twice, with and without the major event
days' interruptions (IEEE reports them apart), and otherwise says why it was not applied.
"""

from __future__ import annotations

import math
import statistics
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from gridwatch import kinds

MOMENTARY_MAX_S = 300
INCIDENT_KINDS = kinds.having("interruption")
CEMI_N = (1, 2, 3)
MED_HISTORY_YEARS = 5
MED_MIN_HISTORY_DAYS = 365

# One row per customer interruption whose start lies in [lo, hi): overlapping or touching intervals of one
# customer merged (gaps and islands over the intervals ordered by start).
INTERRUPTIONS = """
WITH inc AS (
  SELECT a.alert_id, a.started_at AS s, a.resolved_at AS e
  FROM alerts a
  WHERE a.kind = ANY(:kinds) AND NOT a.no_fault AND a.resolved_at IS NOT NULL
    AND a.resolved_at >= a.started_at AND a.started_at < :hi AND a.resolved_at >= :lo - interval '31 days'
), ci AS (
  SELECT ac.customer_id, inc.s, inc.e FROM inc JOIN alert_customers ac ON ac.alert_id = inc.alert_id
), flagged AS (
  SELECT customer_id, s, e,
         CASE WHEN s <= max(e) OVER (PARTITION BY customer_id ORDER BY s, e
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) THEN 0 ELSE 1 END AS fresh
  FROM ci
), grouped AS (
  SELECT customer_id, s, e, sum(fresh) OVER (PARTITION BY customer_id ORDER BY s, e
                                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS g
  FROM flagged
), merged AS (
  SELECT customer_id, min(s) AS s, max(e) AS e FROM grouped GROUP BY customer_id, g
)
SELECT m.customer_id, COALESCE(c.feeder_id, '(unknown)') AS feeder_id, m.s,
       extract(epoch FROM m.e - m.s) / 60.0 AS minutes,
       extract(epoch FROM m.e - m.s) <= :momentary_s AS momentary,
       extract(month FROM m.s AT TIME ZONE 'UTC')::int AS month,
       (m.s AT TIME ZONE 'UTC')::date AS day
FROM merged m LEFT JOIN customers c ON c.customer_id = m.customer_id
WHERE m.s >= :lo AND m.s < :hi
"""

# the interruptions are computed once per report into a temporary table (dropped with the transaction)
TEMP = "gw_interruptions"
WHERE = "s >= :lo AND s < :hi AND NOT (day = ANY(:excluded_days))"

AGGREGATE = f"""
SELECT feeder_id, month,
       count(*) FILTER (WHERE NOT momentary) AS sustained,
       coalesce(sum(minutes) FILTER (WHERE NOT momentary), 0) AS cmi,
       count(*) FILTER (WHERE momentary) AS momentary
FROM {TEMP} WHERE {WHERE} GROUP BY GROUPING SETS ((feeder_id, month), (feeder_id))
"""

# customers with more than n sustained interruptions, per feeder and month and per feeder over the period
CEMI = f"""
WITH k AS (
  SELECT customer_id, feeder_id, month, count(*) AS k FROM {TEMP}
  WHERE NOT momentary AND {WHERE}
  GROUP BY GROUPING SETS ((customer_id, feeder_id, month), (customer_id, feeder_id))
)
SELECT feeder_id, month, {", ".join(f"count(*) FILTER (WHERE k > {n}) AS cemi_{n}" for n in CEMI_N)}
FROM k GROUP BY feeder_id, month
"""

DAILY = f"""
SELECT day, sum(minutes) AS cmi FROM {TEMP} WHERE NOT momentary AND s >= :lo AND s < :hi GROUP BY day ORDER BY day
"""

SERVED = "SELECT COALESCE(feeder_id, '(unknown)') AS feeder_id, count(*) AS n FROM customers GROUP BY 1"


def med_threshold(daily_saidi: list[float]) -> float | None:
    """T_MED = exp(α + 2.5 β) over the days with a non-zero SAIDI (None with fewer than two such days)."""
    logs = [math.log(v) for v in daily_saidi if v > 0]
    if len(logs) < 2:
        return None
    return math.exp(statistics.fmean(logs) + 2.5 * statistics.stdev(logs))


def indices(n_t: int, sustained: int, cmi: float, momentary: int, cemi: dict[int, int]) -> dict[str, Any]:
    """The IEEE 1366 indices of one scope and period from its counts."""
    saifi = sustained / n_t if n_t else None
    saidi = cmi / n_t if n_t else None
    return {
        "customers_served": n_t, "customer_interruptions": sustained, "customer_minutes_interrupted": round(cmi, 3),
        "momentary_customer_interruptions": momentary,
        "saifi": _r(saifi), "saidi": _r(saidi), "caidi": _r(saidi / saifi) if saifi else None,
        "maifi": _r(momentary / n_t) if n_t else None,
        **{f"cemi_{n}": _r(cemi.get(n, 0) / n_t) if n_t else None for n in CEMI_N},
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _year_bounds(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=timezone.utc), datetime(year + 1, 1, 1, tzinfo=timezone.utc)


def _params(lo: datetime, hi: datetime, excluded: list[date]) -> dict:
    return {"lo": lo, "hi": hi, "kinds": list(INCIDENT_KINDS), "momentary_s": MOMENTARY_MAX_S,
            "excluded_days": excluded}


def major_event_days(conn: Connection, year: int, served: int) -> dict[str, Any]:
    """The 2.5 β rule for ``year`` from the five years before it (see the module's docstring)."""
    lo, hi = _year_bounds(year)
    history_lo = datetime(year - MED_HISTORY_YEARS, 1, 1, tzinfo=timezone.utc)  # within the temporary table
    past = conn.execute(text(DAILY), _params(history_lo, lo, [])).all()
    result: dict[str, Any] = {"method": "IEEE 1366 2.5 beta", "history_years": MED_HISTORY_YEARS,
                              "applied": False, "threshold_saidi_minutes": None, "days": []}
    if not past or not served:
        result["reason"] = "no interruption history before the year"
        return result
    span = (lo.date() - past[0].day).days
    if span < MED_MIN_HISTORY_DAYS:
        result["reason"] = f"{span} days of history before the year; the rule needs {MED_MIN_HISTORY_DAYS}"
        return result
    threshold = med_threshold([float(r.cmi) / served for r in past])
    if threshold is None:
        result["reason"] = "fewer than two days with sustained interruptions in the history"
        return result
    this_year = conn.execute(text(DAILY), _params(lo, hi, [])).all()
    days = [r.day for r in this_year if float(r.cmi) / served > threshold]
    result.update(applied=True, threshold_saidi_minutes=round(threshold, 6), days=[d.isoformat() for d in days])
    return result


def _collect(conn: Connection, lo: datetime, hi: datetime, excluded: list[date], served: dict[str, int],
             feeder: str | None) -> dict[str, Any]:
    params = _params(lo, hi, excluded)
    counts: dict[tuple[str, int | None], list] = {}
    for row in conn.execute(text(AGGREGATE), params):
        counts[(row.feeder_id, row.month)] = [row.sustained, float(row.cmi), row.momentary]
    cemi: dict[tuple[str, int | None], dict[int, int]] = {}
    for row in conn.execute(text(CEMI), params):
        cemi[(row.feeder_id, row.month)] = {n: getattr(row, f"cemi_{n}") for n in CEMI_N}
    months = sorted({m for (_, m) in counts if m is not None})
    feeders = sorted(set(served) | {f for f, _ in counts})
    if feeder is not None:
        feeders = [f for f in feeders if f == feeder]

    def scope(selected: list[str]) -> dict[str, Any]:
        n_t = sum(served.get(f, 0) for f in selected)
        out = {}
        for period in [*months, None]:
            sus = cmi = mom = 0
            ce = {n: 0 for n in CEMI_N}
            for f in selected:
                c = counts.get((f, period))
                if c:
                    sus, cmi, mom = sus + c[0], cmi + c[1], mom + c[2]
                for n, v in cemi.get((f, period), {}).items():
                    ce[n] += v
            out["ytd" if period is None else f"{lo.year}-{period:02d}"] = indices(n_t, sus, cmi, mom, ce)
        return out

    return {"system": scope(feeders if feeder is not None else sorted(set(served) | {f for f, _ in counts})),
            "feeders": {f: scope([f]) for f in feeders}}


def report(conn: Connection, *, year: int | None = None, feeder: str | None = None) -> dict[str, Any]:
    """Every index per month and year to date, for the system (or one ``feeder``) and each feeder."""
    year = year or datetime.now(timezone.utc).year
    lo, hi = _year_bounds(year)
    history_lo = datetime(year - MED_HISTORY_YEARS, 1, 1, tzinfo=timezone.utc)
    # sorts of a few hundred thousand interruptions stay in memory; both settings end with the transaction
    conn.execute(text("SET LOCAL work_mem = '64MB'"))
    conn.execute(text(f"DROP TABLE IF EXISTS pg_temp.{TEMP}"))
    conn.execute(text(f"CREATE TEMP TABLE {TEMP} ON COMMIT DROP AS {INTERRUPTIONS}"), _params(history_lo, hi, []))
    served = {r.feeder_id: r.n for r in conn.execute(text(SERVED))}
    med = major_event_days(conn, year, sum(served.values()))
    body = _collect(conn, lo, hi, [], served, feeder)
    out = {"year": year, "momentary_max_s": MOMENTARY_MAX_S, "months_in_utc": True, "feeder": feeder,
           "major_event_days": med, **body}
    if med["applied"] and med["days"]:
        excluded = [date.fromisoformat(d) for d in med["days"]]
        out["excluding_major_event_days"] = _collect(conn, lo, hi, excluded, served, feeder)
    conn.execute(text(f"DROP TABLE IF EXISTS pg_temp.{TEMP}"))
    return out


def monthly_rows(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The report flattened to rows (scope, period, indices) for tables and CSV."""
    rows = []
    for scope, periods in [("system", rep["system"]), *rep["feeders"].items()]:
        for period, values in periods.items():
            rows.append({"scope": scope, "period": period, **values})
    return rows
