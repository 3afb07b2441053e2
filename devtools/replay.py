"""``gridwatch replay FILE.csv``: publish recorded meter data to ``meter.readings``.

The file is read with pandas and turned into contract readings by :func:`parse_file` (pure, no Kafka);
:func:`reading_messages` groups them into messages (a JSON array of ``--batch`` consecutive readings of one
meter, key meter_id), which are published with the simulator's publisher (progress bar, ``--speedup``).

Formats (auto-detected from the header, or ``--format``) and column mapping
    ``uci``  UCI "Individual household electric power consumption" (Sceaux, France).
        ``Datetime`` (``dd/mm/YYYY HH:MM:SS``, or ``Date`` + ``Time`` columns, ``;`` or ``,`` separated) local
        time; ``Global_active_power`` kW -> ``kwh = kW * interval_s / 3600``; ``Voltage`` V -> ``v_avg``;
        v_min / v_max null (the file has one voltage per row); the other columns are ignored.
        Rows with ``?`` or an empty value in either column are skipped and counted.
        Sums variants (``datetime`` ``YYYY-MM-DD[ HH:MM:SS]``, hourly or daily SUMS of the minute values,
        recognised by their voltage column being far above any real voltage):
        ``kwh = Global_active_power / 60`` and ``v_avg = Voltage / minutes`` (60 per hour, 1440 per day).
        A period whose implied mean voltage is below 90 % of the file's median is missing minutes (the sum
        covers fewer than 60): it is kept with its kwh but v_avg null and quality ``estimated``.
    ``lcl``  London "Low Carbon London" half-hourly export: first column the timestamp
        (``YYYY-MM-DD HH:MM:SS``, its header empty), second ``KWH/hh (per half hour) `` kWh -> ``kwh``;
        no voltage (v_* null); ``Null``, ``?`` or empty values are skipped.
    ``generic``  columns ``meter_id`` (optional; else ``--meter-id``), ``ts``, ``kwh``, ``v_avg``, ``v_min``,
        ``v_max``, ``quality`` (optional, actual|estimated), ``interval_s`` (optional; else the most common step
        per meter, else ``--interval``). ``ts`` is RFC 3339 and taken as the END of the interval (as on the
        wire); a ``ts`` without an offset is read in ``--tz`` (default UTC).

Time
    ``ts`` on the wire is the END of the interval in UTC. uci and lcl label each row with the START of its
    period (an hourly sum labelled 17:00 holds 17:00-17:59), so ``ts = local label + interval``, converted
    from ``--tz`` (default Europe/Paris for uci, Europe/London for lcl); ``--ts-label end`` if a file labels
    the end. Through DST changes: an ambiguous local time (clocks went back) is the summer-time instant on
    its first occurrence and the winter-time one on the repeat; a nonexistent local time (clocks went
    forward) is read with the offset in force before the change. A reading that then lands on the UTC time
    of an earlier one is skipped as a duplicate and counted. NB: the shared UCI and LCL files show 24 h /
    48 slots on every DST-change day, i.e. they were logged without DST: ``--tz Etc/GMT-1`` (UCI, CET all
    year) or ``--tz UTC`` (LCL, GMT) reproduce their clocks exactly; the defaults give one duplicate (UCI
    hourly) or two (LCL) per spring change and a one-hour gap per autumn change.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from devtools.simulator import _quiet_kafka_logs, add_publish_options, publish_for_command
from gridwatch import config
from gridwatch.contract import parse_ts

__all__ = [
    "FORMATS", "DEFAULT_TZ", "ParseResult", "detect_format", "parse_file", "to_utc",
    "reading_messages", "customer_record", "register",
]

log = logging.getLogger(__name__)

FORMATS = ("uci", "lcl", "generic")
DEFAULT_TZ = {"uci": "Europe/Paris", "lcl": "Europe/London", "generic": "UTC"}
DEFAULT_METER = "M-REPLAY-1"
DEFAULT_CUSTOMER = "C-REPLAY-1"
_MISSING = {"", "?", "null", "nan", "na", "n/a", "none"}
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")

SKIP_MISSING = "missing value ('?' or empty)"
SKIP_BAD_TS = "unparseable timestamp"
SKIP_NEGATIVE = "negative value"
SKIP_DUPLICATE = "duplicate UTC timestamp"
SKIP_BAD_QUALITY = "quality not actual|estimated"
SKIP_NO_VALUE = "no kwh and no voltage"


@dataclass
class ParseResult:
    """What :func:`parse_file` made of a file. ``readings`` are contract dicts sorted by (meter_id, ts)."""
    format: str
    variant: str            # minute | hourly sums | daily sums | half-hourly | generic | ...
    tz: str
    interval_s: int
    rows: int               # data rows read (after --limit)
    readings: list[dict]
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    estimated: int = 0      # readings kept with quality "estimated" (incomplete sums)
    ambiguous: int = 0      # local times in a clocks-back hour
    nonexistent: int = 0    # local times in a clocks-forward gap
    notes: list[str] = field(default_factory=list)

    @property
    def meter_ids(self) -> list[str]:
        return sorted({r["meter_id"] for r in self.readings})

    def summary(self) -> str:
        why = ", ".join(f"{k}: {v}" for k, v in self.skip_reasons.items())
        est = f", {self.estimated} estimated" if self.estimated else ""
        return (f"{self.format} ({self.variant}, {self.interval_s} s, {self.tz}): {self.rows} rows -> "
                f"{len(self.readings)} readings{est}, {self.skipped} skipped" + (f" ({why})" if why else ""))


# ------------------------------------------------------------------------------------------- detection

def _header(path: Path) -> str:
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        return fh.readline().rstrip("\r\n")


def detect_format(path: str | Path) -> str:
    """uci | lcl | generic, from the header line."""
    head = _header(Path(path))
    cols = [c.strip().lower() for c in head.replace(";", ",").split(",")]
    if "global_active_power" in cols:
        return "uci"
    if any(c.startswith("kwh/hh") for c in cols):
        return "lcl"
    if "ts" in cols and ("kwh" in cols or "v_avg" in cols):
        return "generic"
    raise ValueError(f"{path}: cannot tell the format from the header {head[:120]!r}; use --format "
                     f"({', '.join(FORMATS)})")


# -------------------------------------------------------------------------------------------- time

def to_utc(naive: pd.Series, tz: str, group: pd.Series | None = None) -> tuple[pd.Series, int, int]:
    """Naive local datetimes -> UTC, through DST changes; returns (utc, n_ambiguous, n_nonexistent).

    Ambiguous (clocks back): the first occurrence of a local time (per ``group``, e.g. meter) is the DST
    instant, a repeat the standard-time one. Nonexistent (clocks forward): read with the offset in force
    before the change (Python's fold=0), e.g. 02:30 on the spring day in Paris -> 01:30 UTC.
    """
    if tz.upper() in ("UTC", "Z", "ETC/UTC", "GMT", "ETC/GMT"):
        return naive.dt.tz_localize("UTC"), 0, 0
    keys = [naive] if group is None else [group, naive]
    first = (pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)}).groupby(
        [f"k{i}" for i in range(len(keys))], sort=False, dropna=False).cumcount() == 0).to_numpy()
    loc = naive.dt.tz_localize(tz, ambiguous=first, nonexistent="NaT")
    as_dst = naive.dt.tz_localize(tz, ambiguous=np.ones(len(naive), bool), nonexistent="NaT")
    as_std = naive.dt.tz_localize(tz, ambiguous=np.zeros(len(naive), bool), nonexistent="NaT")
    n_amb = int(((as_dst != as_std) & as_dst.notna()).sum())
    gap = loc.isna() & naive.notna()
    utc = loc.dt.tz_convert("UTC")
    n_gap = int(gap.sum())
    if n_gap:
        zi = ZoneInfo(tz)
        fixed = [pd.Timestamp(t.to_pydatetime().replace(tzinfo=zi, fold=0).astimezone(timezone.utc))
                 for t in naive[gap]]
        utc = utc.copy()
        utc[gap] = pd.Series(fixed, index=naive.index[gap], dtype=utc.dtype)
    return utc, n_amb, n_gap


def _epoch_s(utc: pd.Series) -> np.ndarray:
    return ((utc - _EPOCH) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def _parse_naive(text: pd.Series, formats: Iterable[str]) -> pd.Series:
    """Parse with the first format that reads the first non-empty value; unparseable -> NaT."""
    sample = next((s for s in text if s.strip()), "")
    for fmt in formats:
        try:
            datetime.strptime(sample.strip(), fmt)
        except ValueError:
            continue
        return pd.to_datetime(text.str.strip(), format=fmt, errors="coerce")
    return pd.to_datetime(text.str.strip(), errors="coerce", format="mixed")


def _typical_step(naive: pd.Series, default: int) -> int:
    """The file's interval: the most common positive step between consecutive rows (the smallest on a tie),
    robust to gaps and DST jumps; ``default`` when there is no step at all."""
    d = naive.dropna().diff().dropna()
    d = d[d > pd.Timedelta(0)]
    if d.empty:
        return default
    secs = (d // pd.Timedelta(seconds=1)).astype(np.int64)
    counts = secs.value_counts()
    return max(1, int(counts[counts == counts.max()].index.min()))


# ------------------------------------------------------------------------------------------- parsing

def _read(path: Path, limit: int | None) -> pd.DataFrame:
    sep = ";" if ";" in _header(path) else ","
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, nrows=limit, encoding="utf-8-sig",
                     skipinitialspace=True)
    return df


def _num(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values, missing) of a text column; '?', empty, Null... are missing (NaN)."""
    t = s.astype(str).str.strip()
    missing = t.str.lower().isin(_MISSING).to_numpy()
    vals = pd.to_numeric(t.where(~missing), errors="coerce").to_numpy(dtype=float)
    return vals, missing | np.isnan(vals)


def _col(df: pd.DataFrame, *names: str) -> str | None:
    low = {c.strip().lower(): c for c in df.columns}
    for n in names:
        if n.lower() in low:
            return low[n.lower()]
    return None


class _Rows:
    """Accumulates per-row decisions so that every row is either a reading or counted as skipped once."""

    def __init__(self, n: int):
        self.keep = np.ones(n, bool)
        self.reasons: Counter = Counter()

    def skip(self, mask: np.ndarray, reason: str) -> None:
        new = mask & self.keep
        k = int(new.sum())
        if k:
            self.reasons[reason] += k
            self.keep &= ~mask


def parse_file(path: str | Path, fmt: str | None = None, *, meter_id: str = DEFAULT_METER,
               tz: str | None = None, limit: int | None = None, ts_label: str | None = None,
               interval: int | None = None) -> ParseResult:
    """Read a recorded-data CSV into contract readings (pure: no Kafka). See the module docstring."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    tz = tz or DEFAULT_TZ[fmt]
    ZoneInfo(tz)  # fail early on a bad zone name
    label = ts_label or ("end" if fmt == "generic" else "start")
    if label not in ("start", "end"):
        raise ValueError("ts_label must be 'start' or 'end'")
    df = _read(path, limit)
    if fmt == "uci":
        return _parse_uci(df, meter_id, tz, label)
    if fmt == "lcl":
        return _parse_lcl(df, meter_id, tz, label)
    return _parse_generic(df, meter_id, tz, label, interval)


def _finish(fmt: str, variant: str, tz: str, interval: int, df: pd.DataFrame, rows: _Rows,
            naive: pd.Series, meter: pd.Series, label: str, cols: dict[str, np.ndarray],
            quality: np.ndarray, interval_s: np.ndarray | None = None, n_est: int = 0,
            notes: list[str] | None = None) -> ParseResult:
    notes = list(notes or [])
    rows.skip(naive.isna().to_numpy(), SKIP_BAD_TS)
    keep = rows.keep
    naive_k = naive[keep].reset_index(drop=True)
    meter_k = meter[keep].reset_index(drop=True)
    utc, n_amb, n_gap = to_utc(naive_k, tz, meter_k)
    iv = (np.full(len(naive_k), interval, dtype=np.int64) if interval_s is None
          else interval_s[keep].astype(np.int64))
    ts = _epoch_s(utc) + (iv if label == "start" else 0)
    frame = pd.DataFrame({"meter_id": meter_k, "ts": ts, "interval_s": iv,
                          **{k: v[keep] for k, v in cols.items()}, "quality": quality[keep]})
    frame["row"] = np.arange(len(frame))
    dup = frame.duplicated(["meter_id", "ts"], keep="first").to_numpy()
    if dup.any():
        rows.reasons[SKIP_DUPLICATE] += int(dup.sum())
        frame = frame[~dup]
    if n_gap:
        notes.append(f"{n_gap} local times do not exist in {tz} (clocks went forward); read with the offset "
                     "before the change" + (f"; {int(dup.sum())} then duplicated an earlier reading "
                                             "and were skipped" if dup.any() else "") +
                     ". A file logged without DST replays exactly with --tz UTC or a fixed Etc/GMT±N zone.")
    if n_amb:
        notes.append(f"{n_amb} local times fall in the repeated hour of {tz} (clocks went back); the first "
                     "occurrence was read as summer time, a repeat as winter time")
    frame = frame.sort_values(["meter_id", "ts", "row"], kind="stable")
    ts_text = pd.to_datetime(frame["ts"].to_numpy(), unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
    out_cols = {}
    for k in ("kwh", "v_avg", "v_min", "v_max"):
        a = frame[k].to_numpy(dtype=float)
        digits = 6 if k == "kwh" else 2
        obj = np.round(a, digits).astype(object)
        obj[np.isnan(a)] = None
        out_cols[k] = obj.tolist()
    readings = [
        {"meter_id": m, "ts": t, "interval_s": i, "kwh": k, "v_avg": va, "v_min": vn, "v_max": vx, "quality": q}
        for m, t, i, k, va, vn, vx, q in zip(
            frame["meter_id"].tolist(), list(ts_text), frame["interval_s"].astype(int).tolist(),
            out_cols["kwh"], out_cols["v_avg"], out_cols["v_min"], out_cols["v_max"], frame["quality"].tolist())
    ]
    skipped = sum(rows.reasons.values())
    return ParseResult(fmt, variant, tz, int(interval), len(df), readings, skipped, dict(rows.reasons),
                       n_est, n_amb, n_gap, notes)


def _parse_uci(df: pd.DataFrame, meter_id: str, tz: str, label: str) -> ParseResult:
    n = len(df)
    dcol, tcol = _col(df, "Date"), _col(df, "Time")
    dtcol = _col(df, "Datetime", "date_time", "timestamp")
    if dtcol is not None:
        text = df[dtcol].astype(str)
    elif dcol is not None and tcol is not None:
        text = df[dcol].astype(str).str.strip() + " " + df[tcol].astype(str).str.strip()
    elif dcol is not None:
        text = df[dcol].astype(str)
    else:
        raise ValueError("uci: no Datetime (or Date + Time) column")
    pcol, vcol = _col(df, "Global_active_power"), _col(df, "Voltage")
    if pcol is None or vcol is None:
        raise ValueError("uci: needs Global_active_power and Voltage columns")
    naive = _parse_naive(text, ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
                                "%Y-%m-%d"))
    rows = _Rows(n)
    power, p_missing = _num(df[pcol])
    volts, v_missing = _num(df[vcol])
    rows.skip(p_missing | v_missing, SKIP_MISSING)
    rows.skip((np.nan_to_num(power) < 0) | (np.nan_to_num(volts) < 0), SKIP_NEGATIVE)
    step = _typical_step(naive[rows.keep & naive.notna().to_numpy()], 60)
    ok = rows.keep & naive.notna().to_numpy()
    med_v = float(np.median(volts[ok])) if ok.any() else 0.0
    quality = np.full(n, "actual", dtype=object)
    n_est = 0
    notes = []
    if med_v > 1000:  # sums of minute values, not volts
        minutes = max(1, step // 60)
        variant = {60: "hourly sums", 1440: "daily sums"}.get(minutes, f"{minutes}-minute sums")
        kwh = power / 60.0
        v_avg = volts / minutes
        incomplete = ok & (v_avg < 0.9 * med_v / minutes)
        n_est = int(incomplete.sum())
        v_avg = np.where(incomplete, np.nan, v_avg)
        quality[incomplete] = "estimated"
        if n_est:
            notes.append(f"{n_est} periods are missing minutes (implied mean voltage < 90 % of the median): "
                         "kept with v_avg null, quality estimated")
    else:
        variant = "minute" if step == 60 else f"{step} s"
        kwh = power * step / 3600.0
        v_avg = volts
    nan = np.full(n, np.nan)
    return _finish("uci", variant, tz, step, df, rows, naive, pd.Series([meter_id] * n), label,
                   {"kwh": kwh, "v_avg": v_avg, "v_min": nan, "v_max": nan}, quality, n_est=n_est, notes=notes)


def _parse_lcl(df: pd.DataFrame, meter_id: str, tz: str, label: str) -> ParseResult:
    n = len(df)
    if df.shape[1] < 2:
        raise ValueError("lcl: needs a timestamp column and a KWH/hh column")
    kcol = next((c for c in df.columns if c.strip().lower().startswith("kwh")), df.columns[1])
    tcol = _col(df, "DateTime", "tstp", "timestamp") or df.columns[0]
    naive = _parse_naive(df[tcol].astype(str), ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S",
                                                 "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"))
    mcol = _col(df, "LCLid", "meter_id")
    meter = df[mcol].astype(str).str.strip() if mcol else pd.Series([meter_id] * n)
    rows = _Rows(n)
    kwh, missing = _num(df[kcol])
    rows.skip(missing, SKIP_MISSING)
    rows.skip(np.nan_to_num(kwh) < 0, SKIP_NEGATIVE)
    step = _typical_step(naive[rows.keep & naive.notna().to_numpy()], 1800)
    variant = "half-hourly" if step == 1800 else f"{step} s"
    nan = np.full(n, np.nan)
    return _finish("lcl", variant, tz, step, df, rows, naive, meter, label,
                   {"kwh": kwh, "v_avg": nan, "v_min": nan, "v_max": nan}, np.full(n, "actual", dtype=object))


def _parse_generic(df: pd.DataFrame, meter_id: str, tz: str, label: str, interval: int | None) -> ParseResult:
    n = len(df)
    tcol = _col(df, "ts")
    if tcol is None:
        raise ValueError("generic: needs a ts column")
    mcol = _col(df, "meter_id")
    meter = df[mcol].astype(str).str.strip() if mcol else pd.Series([meter_id] * n)
    rows = _Rows(n)
    text = df[tcol].astype(str).str.strip()
    rows.skip(meter.str.len().eq(0).to_numpy(), SKIP_MISSING)
    has_offset = text.str.contains(r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$",
                                  regex=True).to_numpy()
    # aware timestamps -> UTC, then back to naive UTC; naive ones are local (--tz), localised in _finish
    aware = pd.to_datetime(text.where(has_offset), utc=True, errors="coerce", format="ISO8601")
    naive_local = pd.to_datetime(text.where(~has_offset), errors="coerce", format="ISO8601")
    cols = {}
    for k in ("kwh", "v_avg", "v_min", "v_max"):
        c = _col(df, k)
        cols[k] = _num(df[c])[0] if c else np.full(n, np.nan)
    rows.skip(np.all([np.isnan(cols[k]) for k in cols], axis=0), SKIP_NO_VALUE)
    rows.skip(np.any([np.nan_to_num(cols[k]) < 0 for k in cols], axis=0), SKIP_NEGATIVE)
    qcol = _col(df, "quality")
    if qcol:
        q = df[qcol].astype(str).str.strip().str.lower().replace("", "actual")
        rows.skip(~q.isin(["actual", "estimated"]).to_numpy(), SKIP_BAD_QUALITY)
        quality = q.to_numpy(dtype=object)
    else:
        quality = np.full(n, "actual", dtype=object)
    # aware rows are made naive UTC; if every row is aware the file is read as UTC, if none, in --tz
    if has_offset.any() and not has_offset.all():
        loc_utc, _, _ = to_utc(naive_local.where(~has_offset), tz, meter)
        naive = aware.dt.tz_convert("UTC").dt.tz_localize(None).where(has_offset, loc_utc.dt.tz_localize(None))
        zone, zone_text = "UTC", f"offsets + {tz}"
    elif has_offset.any():
        naive = aware.dt.tz_convert("UTC").dt.tz_localize(None)
        zone = zone_text = "UTC"
    else:
        naive, zone = naive_local, tz
        zone_text = tz
    icol = _col(df, "interval_s")
    iv = _num(df[icol])[0] if icol else np.full(n, np.nan)
    if np.isnan(iv).any():
        if interval is not None:
            fill = np.full(n, float(interval))
        else:
            ok = rows.keep & naive.notna().to_numpy()
            per_meter = {m: _typical_step(naive[ok & (meter == m).to_numpy()].sort_values(), 900)
                         for m in meter[ok].unique()}
            fill = np.array([per_meter.get(m, 900) for m in meter], dtype=float)
        iv = np.where(np.isnan(iv), fill, iv)
    iv = np.clip(iv, 1, 86400).astype(np.int64)
    interval_main = int(np.median(iv[rows.keep])) if rows.keep.any() else (interval or 900)
    res = _finish("generic", "generic", zone, interval_main, df, rows, naive, meter, label, cols, quality,
                  interval_s=iv)
    res.tz = zone_text
    return res


# ------------------------------------------------------------------------------------------ publishing

def reading_messages(readings: list[dict], batch: int) -> Iterator[tuple[int, str, str, list[dict]]]:
    """``(event_time, topic, key, [readings])``: runs of ``batch`` consecutive readings of one meter, ordered
    by the ts of their last reading, then meter_id (one meter: simply in time order)."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    msgs = []
    by_meter: dict[str, list[dict]] = {}
    for r in readings:
        by_meter.setdefault(r["meter_id"], []).append(r)
    for mid, rs in by_meter.items():
        for i in range(0, len(rs), batch):
            chunk = rs[i:i + batch]
            msgs.append((parse_ts(chunk[-1]["ts"]), mid, chunk))
    msgs.sort(key=lambda m: (m[0], m[1]))
    for t, mid, chunk in msgs:
        yield t, config.READINGS, mid, chunk


def customer_record(meter_id: str = DEFAULT_METER, customer_id: str = DEFAULT_CUSTOMER,
                    timezone_name: str = "Europe/Paris", phone: str | None = None) -> dict:
    """A customer for replayed data: 230 V (EN 50160), English, residential, in the file's region."""
    london = timezone_name == "Europe/London"
    return {
        "customer_id": customer_id, "meter_id": meter_id, "transformer_id": "T-REPLAY", "feeder_id": "F-REPLAY",
        "segment": "residential",
        "phone": phone or ("+447700900000" if london else "+33639980000"),  # fiction ranges (Ofcom / ARCEP)
        "language": "en", "timezone": timezone_name, "nominal_voltage": 230, "bill_cycle_day": 1,
        "tariff": {"currency": "GBP", "price_per_kwh": 0.245} if london
        else {"currency": "EUR", "price_per_kwh": 0.2516},
        "opted_out": False,
        "preferences": {"quiet_hours": ["22:00", "08:00"], "bill_alert_pct": 30},
    }


def _customer_zone(fmt: str, tz: str) -> str:
    """The customer's zone: --tz if it is a place (Europe/Paris), else the format's home zone."""
    if "/" in tz and not tz.startswith("Etc/"):
        return tz
    return {"lcl": "Europe/London"}.get(fmt, "Europe/Paris")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay", help="publish recorded meter data (UCI, London LCL or generic CSV) to meter.readings",
        description="Read a CSV of recorded meter data and publish it to meter.readings as the wire contract "
                    "(see docs/replay.md for formats and column mapping).")
    p.add_argument("file", metavar="FILE.csv", help="the CSV to replay")
    p.add_argument("--format", choices=FORMATS, default=None, help="file format (default: detect from the header)")
    p.add_argument("--meter-id", default=DEFAULT_METER,
                   help=f"meter_id of the readings when the file has none (default {DEFAULT_METER})")
    p.add_argument("--tz", default=None,
                   help="time zone of naive timestamps (default Europe/Paris for uci, Europe/London for lcl, "
                        "UTC for generic); converted to UTC through DST")
    p.add_argument("--ts-label", choices=("start", "end"), default=None,
                   help="whether a row's timestamp labels the start or the end of its interval "
                        "(default start for uci/lcl, end for generic)")
    p.add_argument("--interval", type=int, default=None,
                   help="generic: interval_s when the file has no interval_s column "
                        "(default: the most common step per meter)")
    p.add_argument("--batch", type=int, default=None,
                   help="readings per message (default one hour's worth: 60 for minute data, 2 half-hourly)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="read only the first N data rows")
    p.add_argument("--speedup", type=float, default=None,
                   help="pace publishing: event time runs X times faster than wall time; default as fast as possible")
    p.add_argument("--customer", nargs="?", const=DEFAULT_CUSTOMER, default=None, metavar="CUSTOMER_ID",
                   help=f"first publish a matching customer record (230 V, en, EN 50160) "
                        f"(id default {DEFAULT_CUSTOMER}; with several meters C-<meter_id>)")
    p.add_argument("--phone", default=None, help="phone (E.164) of the --customer record (default a fiction number)")
    add_publish_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _quiet_kafka_logs(args)
    err = sys.stderr
    t_start = time.monotonic()
    try:
        res = parse_file(args.file, args.format, meter_id=args.meter_id, tz=args.tz, limit=args.limit,
                         ts_label=args.ts_label, interval=args.interval)
    except (OSError, ValueError, KeyError) as exc:
        print(f"gridwatch replay: error: {exc}", file=err)
        return 2
    for note in res.notes:
        log.warning("%s", note)
    if not res.readings:
        print(f"gridwatch replay: nothing to publish: {res.summary()}", file=err)
        return 1
    batch = args.batch or max(1, 3600 // res.interval_s)
    msgs = list(reading_messages(res.readings, batch))
    first_t = msgs[0][0]
    records: list[tuple[int, str, str, Any]] = []
    if args.customer:
        meters = res.meter_ids
        zone = _customer_zone(res.format, res.tz)
        for mid in meters:
            cid = args.customer if len(meters) == 1 else f"C-{mid}"
            records.append((first_t, config.CUSTOMERS, cid, customer_record(mid, cid, zone, args.phone)))
    code, sent = publish_for_command("replay", records + msgs, len(records) + len(msgs), args)
    if sent is None:
        return code
    secs = time.monotonic() - t_start
    print(f"replay: {res.summary()}; {sent['messages']} messages "
          f"({sent.get(config.CUSTOMERS, 0)} customers) in {secs:.1f} s",
          file=err if args.out == "-" else sys.stdout)
    return 0
