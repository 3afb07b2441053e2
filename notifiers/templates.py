"""SMS texts for alerts (``en`` and ``zh-CN``) and SMS segment counting.

``render(alert, customer)`` builds the text for one customer: what was found, where (``scope.level`` meter →
"at your supply", transformer/feeder → "in your area"), since when (``alert["started_at"]`` shown as local
``HH:MM`` in ``customer["timezone"]``), what to do (advice differs a little by customer ``segment``), the
safety line, and the opt-out footer. Every body stays within 2 SMS segments (306 GSM-7 characters, or 134
UTF-16 units in UCS-2 for Chinese); :func:`sms_segments` is the counter the sandbox and the tests use.

Kinds with their own text: ``undervoltage``, ``overvoltage``, ``outage``, ``loose_neutral`` (an urgent safety
message) and ``bill_spike``. A bill alert is not a supply fault: it says what the bill for the cycle is heading
for against the usual one (amounts in the tariff's currency, or kWh and % when the customer has no tariff),
what changed most, and a tip by segment, with the "HELP for help" footer of bill alerts. Any other kind gets
a generic supply-problem text.

Alerts follow ``gridwatch/schemas/alerts.schema.json``, customers ``customers.schema.json``.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_BRAND",
    "LANGUAGES",
    "MAX_SEGMENTS",
    "normalize_language",
    "parse_rfc3339",
    "render",
    "sms_segments",
]

log = logging.getLogger(__name__)

DEFAULT_BRAND = "GridWatch"
LANGUAGES = ("en", "zh-CN")
MAX_SEGMENTS = 2

# --------------------------------------------------------------------------------------------------
# Segment counting (3GPP TS 23.038 GSM 7-bit default alphabet + extension table)
# --------------------------------------------------------------------------------------------------

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# sent as ESC + char: each costs two septets
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_GSM7_SINGLE, _GSM7_MULTI = 160, 153   # septets per segment: single message / concatenated part
_UCS2_SINGLE, _UCS2_MULTI = 70, 67     # UTF-16 code units per segment


def _pack(units: list[int], single: int, multi: int) -> int:
    """Segments needed for characters of the given unit widths; a character is never split across parts."""
    total = sum(units)
    if total <= single:
        return 1
    segments, used = 1, 0
    for width in units:
        if used + width > multi:
            segments += 1
            used = 0
        used += width
    return segments


def sms_segments(body: str) -> tuple[str, int]:
    """``("GSM-7", n)`` or ``("UCS-2", n)``: the encoding a carrier would use for ``body`` and its segments.

    GSM-7 when every character is in the GSM 03.38 default alphabet or its extension table (extension
    characters such as ``€ [ ] { } ~ ^ | \\`` cost 2): 160 per single message, 153 per part when
    concatenated. Otherwise UCS-2, counted in UTF-16 code units (an emoji is 2): 70 single, 67 per part.
    An escape pair or a surrogate pair is never split across parts. An empty body counts as one segment.
    """
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in body):
        units = [2 if ch in _GSM7_EXTENSION else 1 for ch in body]
        return "GSM-7", _pack(units, _GSM7_SINGLE, _GSM7_MULTI)
    units = [2 if ord(ch) > 0xFFFF else 1 for ch in body]
    return "UCS-2", _pack(units, _UCS2_SINGLE, _UCS2_MULTI)


# --------------------------------------------------------------------------------------------------
# Languages, time
# --------------------------------------------------------------------------------------------------

_SIMPLIFIED_CHINESE = re.compile(r"^zh(-hans)?(-(cn|sg|my))?$")


def normalize_language(language: str | None) -> str:
    """``"zh"``, ``"zh-Hans"``, ``"zh-CN"`` (also ``zh-Hans-CN``, ``zh-SG``) → ``"zh-CN"``; everything else,
    including Traditional Chinese tags (``zh-TW``, ``zh-Hant``) for which there is no text yet, → ``"en"``."""
    tag = (language or "").strip().replace("_", "-").lower()
    if _SIMPLIFIED_CHINESE.match(tag):
        return "zh-CN"
    return "en"


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp with offset (``Z``/``z`` or ``±hh:mm``, up to 9 fractional digits)."""
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    m = re.match(r"^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?([+-]\d{2}:\d{2})$", text, re.IGNORECASE)
    if m:  # fromisoformat takes at most 6 fractional digits
        frac = (m.group(2) or "")[:7]
        text = m.group(1).replace("t", "T") + frac + m.group(3)
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without UTC offset: {value!r}")
    return dt


def _zone(name: str | None):
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown timezone %r, using UTC", name)
        return timezone.utc


def _local_hhmm(timestamp: str | None, tz_name: str | None) -> str | None:
    if not timestamp:
        return None
    try:
        return parse_rfc3339(timestamp).astimezone(_zone(tz_name)).strftime("%H:%M")
    except (ValueError, TypeError):
        log.warning("unparseable alert timestamp %r", timestamp)
        return None


# --------------------------------------------------------------------------------------------------
# Texts. English must stay pure GSM-7 (no curly quotes, dashes or ellipses) or it becomes UCS-2 and
# a 2-segment budget shrinks from 306 to 134 characters.
# --------------------------------------------------------------------------------------------------

_EN = {
    "where": {"meter": "at your supply", "area": "in your area"},
    "found": {
        "undervoltage": "Low voltage detected {where}{since}.",
        "overvoltage": "High voltage detected {where}{since}.",
        "outage": "Power cut {where}{since}. Our crews are working to restore supply.",
        "loose_neutral": "URGENT safety alert: loose neutral wire detected {where}{since}. Lights may flicker "
                         "and appliances act oddly or be damaged: switch off sensitive appliances.",
        "resolved": "Voltage {where} is back to normal{since}. Thank you for your patience.",
        "resolved/outage": "Power {where} is back on{since}. Thank you for your patience.",
        "other": "{what} detected {where}{since}. Our crews are on it.",
    },
    "since": " since {t}",
    "as_of": " as of {t}",
    "what": {"sag": "Voltage dips", "swell": "Voltage surges", "outage": "Power outage",
             "other": "Power supply problem"},
    "advice": {
        "undervoltage": {
            "residential": "To protect appliances, unplug sensitive electronics and avoid running motors "
                           "(AC, pumps, fridges) until it recovers.",
            "commercial": "Protect sensitive equipment: unplug electronics and avoid starting motors or "
                          "compressors until it recovers.",
            "industrial": "Protect equipment: check motor protection and avoid starting large motors until "
                          "it recovers.",
        },
        "overvoltage": {
            "residential": "Use surge protectors and unplug sensitive electronics until it is fixed.",
            "commercial": "Use surge protectors and unplug sensitive equipment until it is fixed.",
            "industrial": "Check surge protection and switch off sensitive equipment until it is fixed.",
        },
        "outage": {
            "residential": "Unplug sensitive electronics and keep fridge and freezer doors closed.",
            "commercial": "Switch off equipment that could restart on its own when power returns.",
            "industrial": "Make sure machines cannot restart unattended when power returns.",
        },
        "loose_neutral": {
            "residential": "Unplug TVs, computers and chargers.",
            "commercial": "Shut down computers, servers and tills.",
            "industrial": "Stop large motors and production machines.",
        },
        "other": {"residential": "Unplug sensitive electronics to protect them.",
                  "commercial": "Unplug sensitive equipment to protect it.",
                  "industrial": "Protect sensitive equipment and motors."},
    },
    "safety": {
        "default": "If lights flicker or you smell burning, switch off at the main and call us.",
        "outage": "Keep clear of any fallen lines and report them to us.",
        "loose_neutral": "Do not touch the meter box. We are sending a technician.",
        "resolved/outage": "Reply OUT if you still have no power.",
    },
    "footer": "Reply STOP to opt out",
    "sep": " ",
    "brand": "{brand}: ",
    "bill": {
        "cycle": "the cycle ending {d}",
        "this_cycle": "this billing cycle",
        "amount": "Your bill for {cycle} is heading for about {proj} (+{pct} on your usual {usual}).",
        "amount_pct": "Your bill for {cycle} is heading for about {proj}, {pct} above usual.",
        "amount_only": "Your bill for {cycle} is heading for about {proj}, well above usual.",
        "kwh": "Your use for {cycle} is heading for about {proj} (+{pct} on your usual {usual}).",
        "kwh_pct": "Your use for {cycle} is heading for about {proj}, {pct} above usual.",
        "kwh_only": "Your use for {cycle} is heading for about {proj}, well above usual.",
        "pct": "Your bill for {cycle} is heading for about {pct} above usual.",
        "none": "Your bill for {cycle} is heading well above usual.",
        "pct_fmt": "{p} %",
        "kwh_fmt": "{v} kWh",
        "driver": "Main change: {driver}.",
        "tip": {
            "residential": "Tip: check for appliances left on at night, and heating or AC settings.",
            "commercial": "Tip: review equipment, lighting and HVAC schedules, or contact your account manager.",
            "industrial": "Tip: review shift and equipment schedules, or contact your account manager.",
        },
        "footer": "Reply STOP to opt out, HELP for help",
    },
}

_ZH = {
    # a business is addressed as 贵单位 rather than 您家 ("your home")
    "where": {"meter": "您家供电", "meter/commercial": "贵单位供电", "meter/industrial": "贵单位供电",
              "area": "您所在区域"},
    "found": {
        "undervoltage": "检测到{where}{since}电压偏低。",
        "overvoltage": "检测到{where}{since}电压偏高。",
        "outage": "{where}{since}停电，抢修人员正在全力恢复供电。",
        "loose_neutral": "紧急安全提醒：检测到{where}{since}零线松动，可能导致灯光闪烁、电器工作异常甚至损坏，"
                         "请关闭敏感电器。",
        "resolved": "{where}电压已{since}恢复正常，感谢您的耐心。",
        "resolved/outage": "{where}已{since}恢复供电，感谢您的耐心。",
        "other": "检测到{where}{since}{what}，抢修人员正在处理。",
    },
    # "您家供电自14:30起停电" says it twice: an outage is "您家自14:30起停电"
    "where/outage": {"meter": "您家", "meter/commercial": "贵单位", "meter/industrial": "贵单位",
                     "area": "您所在区域"},
    "where/loose_neutral": {"meter": "您家线路", "meter/commercial": "贵单位线路", "meter/industrial": "贵单位线路",
                            "area": "您所在区域线路"},
    "since": "自{t}起",
    "as_of": "于{t}",
    "what": {"sag": "电压骤降", "swell": "电压骤升", "outage": "停电", "other": "供电异常"},
    "advice": {
        "undervoltage": {
            "residential": "为保护电器，请拔下电脑、电视等敏感电器插头，暂勿使用空调、水泵等电机类电器。",
            "commercial": "请保护敏感设备：拔下电子设备插头，暂缓启动空调、压缩机等电机设备。",
            "industrial": "请检查电机保护装置，暂缓启动大型电机。",
        },
        "overvoltage": {
            "residential": "请使用防浪涌插座，并拔下敏感电器插头，直至恢复正常。",
            "commercial": "请使用防浪涌保护，并拔下敏感设备插头，直至恢复正常。",
            "industrial": "请检查浪涌保护，关闭敏感设备，直至恢复正常。",
        },
        "outage": {
            "residential": "请拔下敏感电器插头，尽量少开冰箱门。",
            "commercial": "请关闭来电后可能自行启动的设备。",
            "industrial": "请确保来电后机器不会无人值守自行启动。",
        },
        "loose_neutral": {
            "residential": "请拔下电视、电脑、充电器等插头。",
            "commercial": "请将电脑、服务器、收银机等设备断电。",
            "industrial": "请停止大型电机和生产设备。",
        },
        "other": {"residential": "请拔下敏感电器插头以免损坏。",
                  "commercial": "请拔下敏感设备插头以免损坏。",
                  "industrial": "请做好敏感设备和电机的保护。"},
    },
    "safety": {
        "default": "如灯光闪烁或闻到焦味，请断开总闸并致电我们。",
        "outage": "请远离掉落的电线，发现请告知我们。",
        "loose_neutral": "切勿触碰电表箱，我们正派技术人员上门。",
        "resolved/outage": "如仍停电，请回复OUT。",
    },
    "footer": "回复TD退订",
    "sep": "",
    "brand": "【{brand}】",
    "bill": {
        "who": {"residential": "您家", "commercial": "贵单位", "industrial": "贵单位"},
        "cycle": "（截至{d}）",
        "this_cycle": "",
        "amount": "{who}本期{cycle}电费预计约{proj}，比平时的{usual}高{pct}。",
        "amount_pct": "{who}本期{cycle}电费预计约{proj}，比平时高{pct}。",
        "amount_only": "{who}本期{cycle}电费预计约{proj}，明显高于平时。",
        "kwh": "{who}本期{cycle}用电量预计约{proj}，比平时的{usual}高{pct}。",
        "kwh_pct": "{who}本期{cycle}用电量预计约{proj}，比平时高{pct}。",
        "kwh_only": "{who}本期{cycle}用电量预计约{proj}，明显高于平时。",
        "pct": "{who}本期{cycle}电费预计比平时高约{pct}。",
        "none": "{who}本期{cycle}电费预计明显高于平时。",
        "pct_fmt": "{p}%",
        "kwh_fmt": "{v}度",
        "driver": "主要变化：{driver}。",
        "tip": {
            "residential": "建议检查夜间是否有电器未关，以及取暖、空调设置。",
            "commercial": "建议检查设备、照明和空调的运行时间，或联系您的客户经理。",
            "industrial": "建议检查班次和设备运行安排，或联系您的客户经理。",
        },
        "footer": "回复TD退订，回复BZ获取帮助",
    },
}

_TEXTS = {"en": _EN, "zh-CN": _ZH}
_SPECIFIC_KINDS = ("undervoltage", "overvoltage", "outage", "loose_neutral")
_SEGMENTS = ("residential", "commercial", "industrial")
BILL_KIND = "bill_spike"


def render(alert: dict, customer: dict, *, brand: str = DEFAULT_BRAND) -> str:
    """The SMS body for ``alert`` sent to ``customer``, in the customer's language (en fallback).

    Kinds ``undervoltage``, ``overvoltage``, ``outage`` and ``loose_neutral`` get specific texts and advice,
    ``bill_spike`` a bill text (:func:`_bill_parts`); any other kind gets a generic text. A ``resolved``
    alert gets an all-clear instead (for an outage: power back on, reply OUT if still without). The result
    is at most :data:`MAX_SEGMENTS` segments: if the full text would be longer (e.g. a long ``brand``), the
    segment-specific advice (a bill's tip) and then the brand are dropped, then a bill's "main change"
    line; the safety line and the opt-out footer are always kept.
    """
    lang = normalize_language(customer.get("language"))
    t = _TEXTS[lang]
    kind = str(alert.get("kind") or "")
    segment = customer.get("segment") if customer.get("segment") in _SEGMENTS else "residential"
    head = t["brand"].format(brand=brand) if brand else ""

    if kind == BILL_KIND:
        found, detail, advice, footer = _bill_parts(t, lang, alert.get("evidence") or {}, segment)
        return _fit([head, found, detail, advice, "", footer], t["sep"])

    level = (alert.get("scope") or {}).get("level")
    place = "meter" if level == "meter" else "area"
    where_texts = t.get(f"where/{kind}", t["where"])
    where = where_texts.get(f"{place}/{segment}", where_texts[place])
    resolved = alert.get("status") == "resolved"
    tz_name = customer.get("timezone")

    if resolved:
        key = f"resolved/{kind}" if f"resolved/{kind}" in t["found"] else "resolved"
        hhmm = _local_hhmm(alert.get("resolved_at"), tz_name)
    else:
        key = kind if kind in _SPECIFIC_KINDS else "other"
        hhmm = _local_hhmm(alert.get("started_at"), tz_name)
    since = t["as_of" if resolved else "since"].format(t=hhmm) if hhmm else ""
    what = t["what"].get(kind, t["what"]["other"])
    found = t["found"][key].format(where=where, since=since, what=what)
    advice = t["advice"].get(key, {}).get(segment, "")
    safety = t["safety"].get(key, t["safety"]["default"])
    return _fit([head, found, "", advice, safety, t["footer"]], t["sep"])


def _fit(parts: list[str], sep: str) -> str:
    """``parts`` = [brand prefix, found, detail, advice, safety, footer], joined; within the budget by
    dropping the advice, then the brand, then the detail (never the found, safety and footer parts)."""
    head, found, detail, advice, safety, footer = parts
    candidates = (
        [head, found, detail, advice, safety, footer],
        [head, found, detail, safety, footer],
        ["", found, detail, safety, footer],
        ["", found, safety, footer],
    )
    body = ""
    for cand in candidates:
        body = _join(cand, sep)
        if sms_segments(body)[1] <= MAX_SEGMENTS:
            return body
    log.warning("alert SMS exceeds %d segments (%s)", MAX_SEGMENTS, sms_segments(body))
    return body


def _join(parts: list[str], sep: str) -> str:
    """Join the non-empty parts; the brand prefix (first part) already carries its own separator."""
    head, rest = parts[0], [p for p in parts[1:] if p]
    return head + sep.join(rest)


# --------------------------------------------------------------------------------------------------
# Bill alerts: the evidence of a ``bill_spike`` finding (detectors/bill.py)
# --------------------------------------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
#: the driver sentences of detectors.bill._driver: "<part> up N %", "use up about N % at all hours", "use up"
_DRIVER = re.compile(r"^(?P<part>[a-z][a-z -]*?) up(?: (?P<about>about))? (?P<pct>-?\d+(?:\.\d+)?) %"
                     r"(?P<all> at all hours)?$")
_ZH_PARTS = {
    "night-time base load": "夜间基础用电",
    "weekday evenings": "工作日晚间用电",
    "weekday daytime use": "工作日白天用电",
    "weekend use": "周末用电",
    "use": "用电量",
}
_MAX_DRIVER_CHARS = 60


def _bill_parts(t: dict, lang: str, ev: dict, segment: str) -> tuple[str, str, str, str]:
    """(found, main change, tip, footer) of a bill alert.

    Amounts (``projected_amount`` / ``usual_amount`` in ``currency``) when the customer has a tariff; else
    kWh (``projected_kwh`` / ``usual_kwh``); else the % above usual alone; else just "well above usual".
    """
    b = t["bill"]
    end = _iso_date(ev.get("cycle_end"))
    if end is None:
        cycle = b["this_cycle"]
    elif lang == "zh-CN":
        cycle = b["cycle"].format(d=f"{end.month}月{end.day}日")
    else:
        cycle = b["cycle"].format(d=f"{end.day} {_MONTHS[end.month - 1]}")

    currency = ev.get("currency") if isinstance(ev.get("currency"), str) else None
    currency = currency if currency and _CURRENCY.match(currency) else None
    proj_amt, usual_amt = _number(ev.get("projected_amount")), _number(ev.get("usual_amount"))
    proj_kwh, usual_kwh = _number(ev.get("projected_kwh")), _number(ev.get("usual_kwh"))
    if currency and proj_amt is not None:
        style, p_raw, u_raw = "amount", proj_amt, usual_amt
        proj = _money(proj_amt, currency, lang)
        usual = _money(usual_amt, currency, lang) if usual_amt is not None else None
    elif proj_kwh is not None:
        style, p_raw, u_raw = "kwh", proj_kwh, usual_kwh
        proj = b["kwh_fmt"].format(v=_amount(proj_kwh))
        usual = b["kwh_fmt"].format(v=_amount(usual_kwh)) if usual_kwh is not None else None
    else:
        style, p_raw, u_raw, proj, usual = "", None, None, None, None

    pct_above = _number(ev.get("pct_above"))
    if pct_above is None and p_raw is not None and u_raw:
        pct_above = 100 * (p_raw / u_raw - 1)
    pct = b["pct_fmt"].format(p=round(pct_above)) if pct_above is not None and round(pct_above) > 0 else None
    if style:
        style += "" if pct and usual else "_pct" if pct else "_only"
    else:
        style = "pct" if pct else "none"
    found = b[style].format(who=b.get("who", {}).get(segment, ""), cycle=cycle, proj=proj, usual=usual,
                            pct=pct)
    found = found[0].upper() + found[1:]

    driver = _bill_driver(ev.get("driver"), lang)
    detail = b["driver"].format(driver=driver) if driver else ""
    return found, detail, b["tip"].get(segment, ""), b["footer"]


def _bill_driver(driver: object, lang: str) -> str | None:
    """The detector's English driver sentence for an SMS in ``lang``; None when there is none to show."""
    if not isinstance(driver, str):
        return None
    text = " ".join(driver.split())
    if not text or len(text) > _MAX_DRIVER_CHARS:
        return None
    if lang != "zh-CN":
        ok = all(ch in _GSM7_BASIC for ch in text) and "\n" not in text and "\r" not in text
        return text if ok else None
    if text == "use up":
        return "用电量增加"
    m = _DRIVER.match(text)
    if m is None or m.group("part") not in _ZH_PARTS:
        return None
    p = round(float(m.group("pct")))
    if m.group("all"):
        return f"全天各时段用电均增加约{p}%"
    return f"{_ZH_PARTS[m.group('part')]}增加{'约' if m.group('about') else ''}{p}%"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _amount(value: float) -> str:
    """Whole units from 100 up (a projection is no more exact than that), else two decimals."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _money(value: float, currency: str, lang: str) -> str:
    if lang == "zh-CN" and currency == "CNY":
        return f"{_amount(value)}元"
    return f"{currency} {_amount(value)}"


def _iso_date(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None
