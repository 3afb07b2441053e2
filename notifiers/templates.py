"""SMS texts for voltage alerts (``en`` and ``zh-CN``) and SMS segment counting.

``render(alert, customer)`` builds the text for one customer: what was found, where (``scope.level`` meter →
"at your supply", transformer/feeder → "in your area"), since when (``alert["started_at"]`` shown as local
``HH:MM`` in ``customer["timezone"]``), what to do (advice differs a little by customer ``segment``), the
safety line, and the opt-out footer. Every body stays within 2 SMS segments (306 GSM-7 characters, or 134
UTF-16 units in UCS-2 for Chinese); :func:`sms_segments` is the counter the sandbox and the tests use.

Alerts follow ``gridwatch/schemas/alerts.schema.json``, customers ``customers.schema.json``.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
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
        "resolved": "Voltage {where} is back to normal{since}. Thank you for your patience.",
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
        "other": {"residential": "Unplug sensitive electronics to protect them.",
                  "commercial": "Unplug sensitive equipment to protect it.",
                  "industrial": "Protect sensitive equipment and motors."},
        "resolved": {},
    },
    "safety": "If lights flicker or you smell burning, switch off at the main and call us.",
    "footer": "Reply STOP to opt out",
    "sep": " ",
    "brand": "{brand}: ",
}

_ZH = {
    # a business is addressed as 贵单位 rather than 您家 ("your home")
    "where": {"meter": "您家供电", "meter/commercial": "贵单位供电", "meter/industrial": "贵单位供电",
              "area": "您所在区域"},
    "found": {
        "undervoltage": "检测到{where}{since}电压偏低。",
        "overvoltage": "检测到{where}{since}电压偏高。",
        "resolved": "{where}电压已{since}恢复正常，感谢您的耐心。",
        "other": "检测到{where}{since}{what}，抢修人员正在处理。",
    },
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
        "other": {"residential": "请拔下敏感电器插头以免损坏。",
                  "commercial": "请拔下敏感设备插头以免损坏。",
                  "industrial": "请做好敏感设备和电机的保护。"},
        "resolved": {},
    },
    "safety": "如灯光闪烁或闻到焦味，请断开总闸并致电我们。",
    "footer": "回复TD退订",
    "sep": "",
    "brand": "【{brand}】",
}

_TEXTS = {"en": _EN, "zh-CN": _ZH}
_VOLTAGE_KINDS = ("undervoltage", "overvoltage")


def render(alert: dict, customer: dict, *, brand: str = DEFAULT_BRAND) -> str:
    """The SMS body for ``alert`` sent to ``customer``, in the customer's language (en fallback).

    Kinds ``undervoltage`` and ``overvoltage`` get specific advice; any other kind gets a generic text.
    A ``resolved`` alert gets an all-clear instead. The result is at most :data:`MAX_SEGMENTS` segments:
    if the full text would be longer (e.g. a long ``brand``), the segment-specific advice and then the
    brand are dropped; the safety line and the opt-out footer are always kept.
    """
    lang = normalize_language(customer.get("language"))
    t = _TEXTS[lang]
    kind = str(alert.get("kind") or "")
    level = (alert.get("scope") or {}).get("level")
    segment = customer.get("segment") if customer.get("segment") in ("residential", "commercial",
                                                                     "industrial") else "residential"
    place = "meter" if level == "meter" else "area"
    where = t["where"].get(f"{place}/{segment}", t["where"][place])
    resolved = alert.get("status") == "resolved"
    tz_name = customer.get("timezone")

    if resolved:
        key = "resolved"
        hhmm = _local_hhmm(alert.get("resolved_at"), tz_name)
    else:
        key = kind if kind in _VOLTAGE_KINDS else "other"
        hhmm = _local_hhmm(alert.get("started_at"), tz_name)
    since = t["as_of" if resolved else "since"].format(t=hhmm) if hhmm else ""
    what = t["what"].get(kind, t["what"]["other"])
    found = t["found"][key].format(where=where, since=since, what=what)
    advice = t["advice"][key].get(segment, "")

    head = t["brand"].format(brand=brand) if brand else ""
    candidates = (
        [head, found, advice, t["safety"], t["footer"]],
        [head, found, t["safety"], t["footer"]],
        ["", found, t["safety"], t["footer"]],
    )
    body = ""
    for parts in candidates:
        body = _join(parts, t["sep"])
        if sms_segments(body)[1] <= MAX_SEGMENTS:
            return body
    log.warning("alert SMS exceeds %d segments (%s)", MAX_SEGMENTS, sms_segments(body))
    return body


def _join(parts: list[str], sep: str) -> str:
    """Join the non-empty parts; the brand prefix (first part) already carries its own separator."""
    head, rest = parts[0], [p for p in parts[1:] if p]
    return head + sep.join(rest)

