"""Customer texts for alerts (SMS and email, ``en`` and ``zh-CN``) and SMS segment counting.

``render(alert, customer)`` builds the SMS for one customer: what was found, where (``scope.level`` meter →
"at your supply", transformer/feeder → "in your area"), since when (``alert["started_at"]`` shown as local
``HH:MM`` in ``customer["timezone"]``), what to do, the safety line, and the opt-out footer.

Content by ``customer["segment"]``
    - residential: plain language; a bill alert is about the household's bill (projected against usual, in
      the tariff's currency) with a tip about the home;
    - commercial: the same facts in energy-management words (equipment, lighting, HVAC, schedules, the
      account manager);
    - industrial: technical detail from the alert's evidence (the measured extreme voltage, the standard and
      its band, the scope's id; for a bill, the projection's range and basis) and a contact line: the
      customer record's ``account_manager_phone`` (or ``contact``) if present, else the ``contact`` argument,
      else :data:`DEFAULT_CONTACT`.

Kinds with their own text: ``undervoltage``, ``overvoltage``, ``sag``, ``swell``, ``outage``, ``loose_neutral``
(an urgent safety message), ``momentary_interruption`` (a record that is resolved from the start) and
``bill_spike``; any other kind gets a generic supply-problem text. Every supply text carries a safety line:
switch off and call us if lights flicker or something smells of burning; keep clear of fallen lines and no
generator indoors in an outage; never touch the meter box with a loose neutral. A ``resolved`` alert gets an
all-clear (for an outage: reply OUT if still without power).

A bill alert is not a supply fault: it says what the bill for the cycle is heading for against the usual one
(amounts in the tariff's currency, or kWh and % when the customer has no tariff), what changed most, and a
tip. With ``usage`` (:func:`notifiers.tips.usage_summary`) the tip is chosen from the customer's own usage
with an estimated saving (:func:`notifiers.tips.choose_tip`); without one, or when it does not fit, a
general tip by segment.

SMS budget
    An SMS body stays within ``max_segments`` (default :data:`MAX_SEGMENTS` = 2: 306 GSM-7 characters, or 134
    UTF-16 units in UCS-2 for Chinese), counted by :func:`sms_segments`. When the full text is longer, parts
    go in this order until it fits:

    - supply alerts: the segment's advice, the technical detail, the contact line, the brand, then the
      found and safety sentences are replaced by their short forms;
    - bill alerts with a usage tip: the "main change" line (the tip explains the change), the technical
      detail, then the tip gives way to the general tip and the "main change" line comes back;
    - bill alerts: then the technical detail, the tip, the contact line, the brand and the "main change"
      line go, and the found sentence takes its short form.

    The opt-out footer is always kept: "Reply STOP to opt out" / "回复TD退订", and on bill alerts
    "Reply STOP to opt out, HELP for help" / "回复TD退订，回复BZ获取帮助".

Other texts: :func:`help_text` (the answer to HELP), :func:`still_out_text` (the answer to "OUT" after a
restoration notice), :func:`rating_thanks_text` (the answer to a 1-5 rating) and :func:`render_email` (subject
and plain-text body of an alert email: the full evidence, the tip with its formula, the safety advice; no
segment budget).

Alerts follow ``gridwatch/schemas/alerts.schema.json``, customers ``customers.schema.json``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from datetime import date, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gridwatch import kinds
from gridwatch.timefmt import parse_datetime

from .tips import Tip, choose_tip, format_money

__all__ = [
    "DEFAULT_BRAND",
    "DEFAULT_CONTACT",
    "LANGUAGES",
    "MAX_SEGMENTS",
    "TEMPLATE_VERSION",
    "help_text",
    "normalize_language",
    "rating_thanks_text",
    "render",
    "render_email",
    "sms_segments",
    "still_out_text",
]

log = logging.getLogger(__name__)

DEFAULT_BRAND = "GridWatch"
#: the utility's contact shown when neither the call nor the customer record gives one
DEFAULT_CONTACT = "gridwatch.example/help"
LANGUAGES = ("en", "zh-CN")
MAX_SEGMENTS = 2
#: The version of the texts in this module. Bump it whenever any text a customer can receive changes: a body
#: rendered again later (e.g. to find out after a restart whether the provider already has a message) only
#: matches the one sent under the same version, and stored notifications can be grouped by wording.
TEMPLATE_VERSION = 2

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
        return parse_datetime(timestamp).astimezone(_zone(tz_name)).strftime("%H:%M")
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
        "sag": "Brief voltage dips detected {where}{since}.",
        "swell": "Brief voltage surges detected {where}{since}.",
        "outage": "Power cut {where}{since}. Our crews are working to restore supply.",
        "loose_neutral": "URGENT safety alert: loose neutral wire detected {where}{since}. Lights may flicker "
                         "and appliances act oddly or be damaged: switch off sensitive appliances.",
        "resolved": "Voltage {where} is back to normal{since}. Thank you for your patience.",
        "resolved/outage": "Power {where} is back on{since}. Thank you for your patience.",
        "resolved/momentary_interruption": "Power {where} was off for a moment{since} and is back on.",
        "other": "{what} detected {where}{since}. Our crews are on it.",
    },
    # what is left when even one segment is too short for the full sentence
    "found_short": {
        "undervoltage": "Low voltage {where}{since}.",
        "overvoltage": "High voltage {where}{since}.",
        "sag": "Voltage dips {where}{since}.",
        "swell": "Voltage surges {where}{since}.",
        "outage": "Power cut {where}{since}. Crews are on it.",
        "loose_neutral": "URGENT: loose neutral wire {where}{since}. Switch off sensitive appliances.",
        "resolved": "Voltage {where} back to normal{since}.",
        "resolved/outage": "Power {where} back on{since}.",
        "resolved/momentary_interruption": "Brief power cut {where}{since}, now back on.",
        "other": "{what} {where}{since}.",
    },
    "since": " since {t}",
    "as_of": " as of {t}",
    "at": " at {t}",
    "what": {"outage": "Power outage", "other": "Power supply problem"},
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
        "sag": {
            "residential": "Dips can restart computers and reset clocks: a UPS protects sensitive devices.",
            "commercial": "Dips can restart IT and tills: a UPS protects sensitive equipment.",
            "industrial": "Check the ride-through of drives and contactors and tell us of any trips.",
        },
        "swell": {
            "residential": "Use surge protectors for TVs, computers and chargers.",
            "commercial": "Use surge protection for IT and sensitive equipment.",
            "industrial": "Check the surge protection of drives and control systems.",
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
        "resolved/momentary_interruption": {
            "residential": "Reset clocks and check that your fridge and heating restarted.",
            "commercial": "Check that IT, tills and refrigeration restarted.",
            "industrial": "Check that machines and controls restarted safely.",
        },
        "other": {"residential": "Unplug sensitive electronics to protect them.",
                  "commercial": "Unplug sensitive equipment to protect it.",
                  "industrial": "Protect sensitive equipment and motors."},
    },
    "safety": {
        "default": "If lights flicker or you smell burning, switch off at the main and call us.",
        "outage": "Keep clear of any fallen lines and report them to us. Never run a generator indoors.",
        "loose_neutral": "Do not touch the meter box. We are sending a technician.",
        "resolved/outage": "Reply OUT if you still have no power.",
    },
    "safety_short": {
        "default": "Smell burning? Switch off at the main.",
        "outage": "Keep clear of fallen lines.",
        "loose_neutral": "Do not touch the meter box.",
        "resolved/outage": "Reply OUT if still off.",
    },
    # industrial technical detail
    "tech": {
        "undervoltage": "Lowest {v} V", "overvoltage": "Highest {v} V", "sag": "Dip to {v} V",
        "swell": "Surge to {v} V", "loose_neutral": "Swinging {lo}-{hi} V", "other": "Measured {v} V",
        "pu": " ({pu} pu)",
        "band": " vs {lo}-{hi} V", "std": " ({std})", "band_only": "Band {lo}-{hi} V",
        "outage": "{out} of {total} meters off",
        "duration": "off {d}",
        "scope": {"meter": "meter {id}", "transformer": "transformer {id}", "feeder": "feeder {id}"},
        "scope_only": "Scope: {scope}.",
        "line": "{measure}, {scope}.",
        "bill": "Likely range {lo} to {hi}{basis}.", "bill_basis": " vs {basis}",
        "bill_pct": "{p:+d} %",
    },
    "contact": {"record": "Your account manager: {c}.", "contact": "Contact: {c}."},
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
        "short": "Your bill is heading {pct} above usual.",
        "short_none": "Your bill is heading well above usual.",
        "pct_fmt": "{p} %",
        "kwh_fmt": "{v} kWh",
        "driver": "Main change: {driver}.",
        "basis": {"same period last year": "the same period last year", "recent cycles": "recent cycles"},
        "tip": {
            "residential": "Tip: check for appliances left on at night, and heating or AC settings.",
            "commercial": "Tip: review equipment, lighting and HVAC schedules, or contact your account manager.",
            "industrial": "Tip: review shift and equipment schedules, or contact your account manager.",
        },
        "footer": "Reply STOP to opt out, HELP for help",
    },
    "help": {
        "who": "Power alerts from your electricity supplier: we text you about power cuts, voltage problems "
               "and unusual bills{at}.",
        "who_short": "Alerts from your power supplier: cuts, voltage, bills.",
        "at": {"residential": " for your home", "commercial": " for your site", "industrial": " for your site"},
        "contact": "Help: {c}.",
        "footer": "Reply STOP to opt out.",
    },
    "still_out": {
        "text": "Thank you. We have logged that your power is still off and reopened the fault for our crews.",
        "safety": "Keep clear of any fallen lines.",
    },
    "rating": {
        "thanks": "Thank you for rating our message {r}/5. It helps us improve our alerts.",
        "thanks_plain": "Thank you for your rating. It helps us improve our alerts.",
        "sorry": "Sorry it fell short. To tell us more: {c}.",
    },
    "email": {
        "hello": "Hello,",
        "details": "Details",
        "when": "Started: {t}",
        "resolved_at": "Resolved: {t}",
        "scope": "Where: {scope} ({where})",
        "measured": "Measured: {m}",
        "lowest": "lowest {v} V", "highest": "highest {v} V", "swing": "between {lo} V and {hi} V",
        "band": "normal band {lo}-{hi} V{std}", "std": " under {std}", "nominal": "nominal {v} V",
        "meters": "Meters affected: {n}{of}", "of": " (of {m} reporting)",
        "outage_meters": "Meters without power: {out} of {total}",
        "duration": "Duration: {d}",
        "swings": "Swings above and below the band: {n}",
        "cycle": "Billing cycle: {a} to {b}{left}", "left": " ({n} days left)",
        "so_far": "Used so far: {kwh}{amount}", "so_far_amount": " (about {m} at your price)",
        "projected": "Heading for: {proj}{range}", "range": ", likely {lo} to {hi} against usual",
        "usual": "Usual bill: {usual}{basis}", "from_basis": ", from {basis}",
        "drivers": "By part of the day: {parts}",
        "driver_parts": {"night": "night", "weekday_evening": "weekday evenings", "weekday_day": "weekday daytime",
                         "weekend": "weekends"},
        "what_to_do": "What to do: {a}",
        "safety": "Safety: {s}",
        "how": "How we worked this out: {b}",
        "contact": "Questions: {c}",
        "unsubscribe": "Unsubscribe: reply STOP to our SMS number, or change your preferences.",
        "subject": {
            "undervoltage": "Low voltage {where}", "overvoltage": "High voltage {where}",
            "sag": "Voltage dips {where}", "swell": "Voltage surges {where}", "outage": "Power cut {where}",
            "loose_neutral": "URGENT: loose neutral wire {where}", "resolved": "Voltage back to normal {where}",
            "resolved/outage": "Power back on {where}",
            "resolved/momentary_interruption": "Brief power cut {where}",
            "other": "Power supply problem {where}", "bill": "Your bill is heading above usual",
        },
    },
}

_ZH = {
    # a business is addressed as 贵单位 rather than 您家 ("your home")
    "where": {"meter": "您家供电", "meter/commercial": "贵单位供电", "meter/industrial": "贵单位供电",
              "area": "您所在区域"},
    "found": {
        "undervoltage": "检测到{where}{since}电压偏低。",
        "overvoltage": "检测到{where}{since}电压偏高。",
        "sag": "检测到{where}{since}出现短时电压骤降。",
        "swell": "检测到{where}{since}出现短时电压骤升。",
        "outage": "{where}{since}停电，抢修人员正在全力恢复供电。",
        "loose_neutral": "紧急安全提醒：检测到{where}{since}零线松动，可能导致灯光闪烁、电器工作异常甚至损坏，"
                         "请关闭敏感电器。",
        "resolved": "{where}电压已{since}恢复正常，感谢您的耐心。",
        "resolved/outage": "{where}已{since}恢复供电，感谢您的耐心。",
        "resolved/momentary_interruption": "{where}{since}短暂停电，现已恢复供电。",
        "other": "检测到{where}{since}{what}，抢修人员正在处理。",
    },
    "found_short": {
        "undervoltage": "{where}{since}电压偏低。",
        "overvoltage": "{where}{since}电压偏高。",
        "sag": "{where}{since}电压骤降。",
        "swell": "{where}{since}电压骤升。",
        "outage": "{where}{since}停电，正在抢修。",
        "loose_neutral": "紧急：{where}{since}零线松动，请关闭敏感电器。",
        "resolved": "{where}电压已{since}恢复正常。",
        "resolved/outage": "{where}已{since}恢复供电。",
        "resolved/momentary_interruption": "{where}{since}短暂停电，现已恢复。",
        "other": "{where}{since}{what}。",
    },
    # "您家供电自14:30起停电" says it twice: an outage is "您家自14:30起停电"
    "where/outage": {"meter": "您家", "meter/commercial": "贵单位", "meter/industrial": "贵单位",
                     "area": "您所在区域"},
    "where/momentary_interruption": {"meter": "您家", "meter/commercial": "贵单位", "meter/industrial": "贵单位",
                                     "area": "您所在区域"},
    "where/loose_neutral": {"meter": "您家线路", "meter/commercial": "贵单位线路", "meter/industrial": "贵单位线路",
                            "area": "您所在区域线路"},
    "since": "自{t}起",
    "as_of": "于{t}",
    "at": "于{t}",
    "what": {"outage": "停电", "other": "供电异常"},
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
        "sag": {
            "residential": "电压骤降可能使电脑重启、时钟归零，建议为敏感电器配备UPS。",
            "commercial": "可能导致电脑、收银机重启，建议为敏感设备配备UPS。",
            "industrial": "请检查变频器和接触器的低电压穿越能力，如有跳闸请告知我们。",
        },
        "swell": {
            "residential": "请为电视、电脑、充电器使用防浪涌插座。",
            "commercial": "请为电脑等敏感设备配备浪涌保护。",
            "industrial": "请检查变频器和控制系统的浪涌保护。",
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
        "resolved/momentary_interruption": {
            "residential": "请检查时钟、冰箱和取暖设备是否已恢复运行。",
            "commercial": "请检查电脑、收银机和冷藏设备是否已恢复运行。",
            "industrial": "请确认机器和控制系统已安全重启。",
        },
        "other": {"residential": "请拔下敏感电器插头以免损坏。",
                  "commercial": "请拔下敏感设备插头以免损坏。",
                  "industrial": "请做好敏感设备和电机的保护。"},
    },
    "safety": {
        "default": "如灯光闪烁或闻到焦味，请断开总闸并致电我们。",
        "outage": "请远离掉落的电线并告知我们，切勿在室内使用发电机。",
        "loose_neutral": "切勿触碰电表箱，我们正派技术人员上门。",
        "resolved/outage": "如仍停电，请回复OUT。",
    },
    "safety_short": {
        "default": "如闻到焦味请断开总闸。",
        "outage": "请远离掉落的电线。",
        "loose_neutral": "切勿触碰电表箱。",
        "resolved/outage": "如仍停电请回复OUT。",
    },
    "tech": {
        "undervoltage": "实测最低{v}V", "overvoltage": "实测最高{v}V", "sag": "骤降至{v}V",
        "swell": "骤升至{v}V", "loose_neutral": "电压在{lo}-{hi}V间摆动", "other": "实测{v}V",
        "pu": "（{pu}pu）",
        "band": "（{std}合格范围{lo}-{hi}V）", "std": "（{std}）", "band_only": "合格范围{lo}-{hi}V",
        "outage": "{total}块电表中{out}块停电",
        "duration": "停电{d}",
        "scope": {"meter": "电表{id}", "transformer": "变压器{id}", "feeder": "馈线{id}"},
        "scope_only": "范围：{scope}。",
        "line": "{measure}，{scope}。",
        "bill": "预测区间{lo}至{hi}{basis}。", "bill_basis": "（对比{basis}）",
        "bill_pct": "{p:+d}%",
    },
    "contact": {"record": "客户经理：{c}。", "contact": "联系方式：{c}。"},
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
        "short": "{who}本期电费预计比平时高约{pct}。",
        "short_none": "{who}本期电费预计明显高于平时。",
        "pct_fmt": "{p}%",
        "kwh_fmt": "{v}度",
        "driver": "主要变化：{driver}。",
        "basis": {"same period last year": "去年同期", "recent cycles": "近期账期"},
        "tip": {
            "residential": "建议检查夜间是否有电器未关，以及取暖、空调设置。",
            "commercial": "建议检查设备、照明和空调的运行时间，或联系您的客户经理。",
            "industrial": "建议检查班次和设备运行安排，或联系您的客户经理。",
        },
        "footer": "回复TD退订，回复BZ获取帮助",
    },
    "help": {
        "who": "我们是您的供电单位，会通过短信通知{at}停电、电压异常和电费异常等情况。",
        "who_short": "供电单位提醒：停电、电压及电费异常。",
        "at": {"residential": "您家", "commercial": "贵单位", "industrial": "贵单位"},
        "contact": "帮助：{c}。",
        "footer": "回复TD退订",
    },
    "still_out": {
        "text": "收到。已记录{who}仍未恢复供电，并已重新派单给抢修人员。",
        "who": {"residential": "您家", "commercial": "贵单位", "industrial": "贵单位"},
        "safety": "请远离掉落的电线。",
    },
    "rating": {
        "thanks": "感谢您给我们的短信打了{r}分，这能帮助我们改进提醒服务。",
        "thanks_plain": "感谢您的评分，这能帮助我们改进提醒服务。",
        "sorry": "抱歉未能让您满意，欢迎告诉我们更多：{c}。",
    },
    "email": {
        "hello": "您好：",
        "details": "详细信息",
        "when": "开始时间：{t}",
        "resolved_at": "恢复时间：{t}",
        "scope": "范围：{scope}（{where}）",
        "measured": "实测：{m}",
        "lowest": "最低{v}V", "highest": "最高{v}V", "swing": "在{lo}V至{hi}V之间",
        "band": "合格范围{lo}-{hi}V{std}", "std": "（{std}）", "nominal": "标称电压{v}V",
        "meters": "受影响电表：{n}块{of}", "of": "（共{m}块在报数）",
        "outage_meters": "停电电表：{total}块中{out}块",
        "duration": "持续时间：{d}",
        "swings": "电压上下摆动次数：{n}",
        "cycle": "账期：{a}至{b}{left}", "left": "（还剩{n}天）",
        "so_far": "本期已用：{kwh}{amount}", "so_far_amount": "（按您的电价约{m}）",
        "projected": "预计：{proj}{range}", "range": "，预测区间{lo}至{hi}",
        "usual": "平时：{usual}{basis}", "from_basis": "，依据{basis}",
        "drivers": "各时段变化：{parts}",
        "driver_parts": {"night": "夜间", "weekday_evening": "工作日晚间", "weekday_day": "工作日白天",
                         "weekend": "周末"},
        "what_to_do": "建议：{a}",
        "safety": "安全提示：{s}",
        "how": "估算方法：{b}",
        "contact": "如有疑问：{c}",
        "unsubscribe": "退订：回复TD至我们的短信号码，或修改通知偏好设置。",
        "subject": {
            "undervoltage": "电压偏低提醒", "overvoltage": "电压偏高提醒", "sag": "电压骤降提醒",
            "swell": "电压骤升提醒", "outage": "停电通知", "loose_neutral": "紧急安全提醒：零线松动",
            "resolved": "电压已恢复正常", "resolved/outage": "恢复供电通知",
            "resolved/momentary_interruption": "短暂停电通知", "other": "供电异常提醒", "bill": "电费预计偏高提醒",
        },
    },
}

_TEXTS = {"en": _EN, "zh-CN": _ZH}
#: the kinds whose notice has its own text (any other kind gets the generic "other" one)
_SPECIFIC_KINDS = tuple(k for k in kinds.names() if k in _EN["found"])
_SEGMENTS = ("residential", "commercial", "industrial")
BILL_KIND = "bill_spike"
MOMENTARY_KIND = "momentary_interruption"
#: the parts of an SMS, in the order they are shown
_ORDER = ("brand", "found", "tech", "detail", "advice", "safety", "contact", "footer")
_MAX_CONTACT_CHARS = 40
_MAX_STANDARD_CHARS = 30
_MAX_ID_CHARS = 32          # a longer scope id is left out of the texts


@dataclass
class _Message:
    """The parts of one alert text before it is fitted to a budget."""

    lang: str
    t: dict
    key: str                       # the text key: a kind, "resolved", "resolved/<kind>", "other" or "bill"
    segment: str
    where: str
    parts: dict[str, str]
    steps: list[dict[str, str]]    # {part: replacement} in the order they are tried; "" drops the part
    general: str = ""              # a bill's general tip by segment
    tip: Tip | None = None
    evidence: dict = field(default_factory=dict)


def render(alert: dict, customer: dict, *, brand: str = DEFAULT_BRAND, usage: dict | None = None,
           max_segments: int = MAX_SEGMENTS, contact: str | None = None) -> str:
    """The SMS body for ``alert`` sent to ``customer``, in the customer's language (en fallback).

    ``usage`` is the customer's :func:`notifiers.tips.usage_summary`: a bill alert then carries the tip it
    supports, with its saving. ``contact`` is the utility's contact for industrial customers whose record
    has none (default :data:`DEFAULT_CONTACT`). The body is at most ``max_segments`` SMS segments (at least
    1): the parts that go first when it is too long are listed in the module docstring; the found sentence,
    the safety line and the opt-out footer always stay (in their short forms as a last resort).
    """
    m = _message(alert, customer, brand=brand, usage=usage, contact=contact)
    return _fit(m.parts, m.steps, m.t["sep"], max_segments)


def _segment(customer: dict) -> str:
    seg = customer.get("segment")
    return seg if seg in _SEGMENTS else "residential"


def _message(alert: dict, customer: dict, *, brand: str, usage: dict | None, contact: str | None) -> _Message:
    lang = normalize_language(customer.get("language"))
    t = _TEXTS[lang]
    kind = str(alert.get("kind") or "")
    segment = _segment(customer)
    ev = alert.get("evidence") if isinstance(alert.get("evidence"), dict) else {}
    scope = alert.get("scope") if isinstance(alert.get("scope"), dict) else {}
    industrial = segment == "industrial"
    parts = dict.fromkeys(_ORDER, "")
    parts["brand"] = t["brand"].format(brand=brand) if brand else ""
    if industrial:
        label, value = _contact(customer, contact)
        parts["contact"] = t["contact"][label].format(c=value)

    if kind == BILL_KIND:
        found, short, detail, general, footer = _bill_parts(t, lang, ev, segment)
        tip = choose_tip(customer, usage, alert, lang) if usage else None
        parts.update(found=found, detail=detail, advice=tip.text if tip else general, footer=footer)
        if industrial:
            parts["tech"] = _bill_tech(t, ev)
        # a usage tip explains the change itself: it displaces the "main change" line, which comes back
        # when the tip has to give way to the (shorter) general tip
        steps = [{"detail": ""}, {"tech": ""}, {"advice": general, "detail": detail}] if tip else []
        steps += [{"tech": ""}, {"advice": ""}, {"contact": ""}, {"brand": ""}, {"detail": ""}, {"found": short}]
        return _Message(lang, t, "bill", segment, "", parts, steps, general=general, tip=tip, evidence=ev)

    place = "meter" if scope.get("level") == "meter" else "area"
    where_texts = t.get(f"where/{kind}", t["where"])
    where = where_texts.get(f"{place}/{segment}", where_texts[place])
    tz_name = customer.get("timezone")
    if kind == MOMENTARY_KIND:     # over before it was reported: a single record, resolved from the start
        key, hhmm, since_fmt = f"resolved/{kind}", _local_hhmm(alert.get("started_at"), tz_name), t["at"]
    elif alert.get("status") == "resolved":
        key = f"resolved/{kind}" if f"resolved/{kind}" in t["found"] else "resolved"
        hhmm, since_fmt = _local_hhmm(alert.get("resolved_at"), tz_name), t["as_of"]
    else:
        key = kind if kind in _SPECIFIC_KINDS else "other"
        hhmm, since_fmt = _local_hhmm(alert.get("started_at"), tz_name), t["since"]
    words = {"where": where, "since": since_fmt.format(t=hhmm) if hhmm else "",
             "what": t["what"].get(kind, t["what"]["other"])}
    safety_key = key if key in t["safety"] else "default"
    parts.update(found=t["found"][key].format(**words), advice=t["advice"].get(key, {}).get(segment, ""),
                 safety=t["safety"][safety_key], footer=t["footer"])
    if industrial:
        parts["tech"] = _tech(t, kind, ev, scope)
    steps = [{"advice": ""}, {"tech": ""}, {"contact": ""}, {"brand": ""},
             {"found": t["found_short"][key].format(**words)}, {"safety": t["safety_short"][safety_key]}]
    return _Message(lang, t, key, segment, where, parts, steps, evidence=ev)


def _fit(parts: dict[str, str], steps: list[dict[str, str]], sep: str, max_segments: int) -> str:
    """Join ``parts`` (in :data:`_ORDER`); while over ``max_segments``, apply ``steps`` one at a time (each
    replaces some parts; an empty text drops the part)."""
    limit = max(1, int(max_segments))
    cur = dict(parts)
    body = _join(cur, sep)
    if sms_segments(body)[1] <= limit:
        return body
    for step in steps:
        if all(cur.get(name, "") == text for name, text in step.items()):
            continue
        cur.update(step)
        body = _join(cur, sep)
        if sms_segments(body)[1] <= limit:
            return body
    log.warning("SMS exceeds %d segments (%s)", limit, sms_segments(body))
    return body


def _join(parts: dict[str, str], sep: str) -> str:
    """The non-empty parts in display order; the brand prefix already carries its own separator."""
    return parts.get("brand", "") + sep.join(parts[k] for k in _ORDER[1:] if parts.get(k))


# --------------------------------------------------------------------------------------------------
# Industrial detail and contact
# --------------------------------------------------------------------------------------------------

def _clean(value: object, limit: int) -> str | None:
    """A short single-line text from a record or the evidence, else None."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    if not text or len(text) > limit or not text.isprintable():
        return None
    return text


def _contact(customer: dict, contact: str | None) -> tuple[str, str]:
    """("record", the customer's account manager) or ("contact", a contact): the record's
    ``account_manager_phone``, its ``contact``, the ``contact`` argument, :data:`DEFAULT_CONTACT`."""
    manager = _clean(customer.get("account_manager_phone"), _MAX_CONTACT_CHARS)
    if manager:
        return "record", manager
    return "contact", (_clean(customer.get("contact"), _MAX_CONTACT_CHARS) or _clean(contact, _MAX_CONTACT_CHARS)
                       or DEFAULT_CONTACT)


def _volts(value: object) -> str | None:
    v = _number(value)
    return None if v is None else f"{v:.1f}".removesuffix(".0")


def _band(ev: dict) -> tuple[str, str] | None:
    band = ev.get("band_v")
    if not isinstance(band, (list, tuple)) or len(band) != 2:
        return None
    lo, hi = _volts(band[0]), _volts(band[1])
    return (lo, hi) if lo is not None and hi is not None else None


def _scope_text(tt: dict, scope: dict) -> str | None:
    level, sid = scope.get("level"), _clean(scope.get("id"), _MAX_ID_CHARS)
    if level not in tt["scope"] or sid is None:
        return None
    return tt["scope"][level].format(id=sid)


def _tech(t: dict, kind: str, ev: dict, scope: dict) -> str:
    """The industrial technical line of a supply alert: measured extreme, the standard's band, the scope."""
    tt = t["tech"]
    std = _clean(ev.get("standard"), _MAX_STANDARD_CHARS)
    band = _band(ev)
    measure = ""
    if kind in ("outage", MOMENTARY_KIND):
        out, total = _number(ev.get("meters_out")), _number(ev.get("meters_total"))
        if out is not None and total is not None:
            measure = tt["outage"].format(out=int(out), total=int(total))
    else:
        if kind == "loose_neutral":
            lo, hi = _volts(ev.get("v_min")), _volts(ev.get("v_max"))
            if lo is not None and hi is not None:
                measure = tt["loose_neutral"].format(lo=lo, hi=hi)
        else:
            raw = ev.get("v_extreme")
            if raw is None:
                raw = ev.get("v_min") if kind == "sag" else ev.get("v_max") if kind == "swell" else None
            v = _volts(raw)
            if v is not None:
                measure = tt.get(kind, tt["other"]).format(v=v)
                pu = _number(ev.get("pu"))
                if pu is not None and kind in ("sag", "swell"):
                    measure += tt["pu"].format(pu=f"{pu:.2f}")
        if measure and band:
            measure += tt["band"].format(lo=band[0], hi=band[1], std=std or "")
            if std and "{std}" not in tt["band"]:       # en names the standard after the band, zh within it
                measure += tt["std"].format(std=std)
        elif measure and std:
            measure += tt["std"].format(std=std)
        elif band:
            measure = tt["band_only"].format(lo=band[0], hi=band[1]) + (tt["std"].format(std=std) if std else "")
    where = _scope_text(tt, scope)
    if measure and where:
        return tt["line"].format(measure=measure, scope=where)
    if measure:
        return measure + ("." if t is _EN else "。")
    return tt["scope_only"].format(scope=where) if where else ""


def _bill_tech(t: dict, ev: dict) -> str:
    """The industrial technical line of a bill alert: the projection's range against the usual bill."""
    tt = t["tech"]
    interval = ev.get("pct_interval")
    if not isinstance(interval, (list, tuple)) or len(interval) != 2:
        return ""
    lo, hi = _number(interval[0]), _number(interval[1])
    if lo is None or hi is None:
        return ""
    basis = t["bill"]["basis"].get(ev.get("basis")) if isinstance(ev.get("basis"), str) else None
    return tt["bill"].format(lo=tt["bill_pct"].format(p=round(lo)), hi=tt["bill_pct"].format(p=round(hi)),
                             basis=tt["bill_basis"].format(basis=basis) if basis else "")


# --------------------------------------------------------------------------------------------------
# Answers to replies
# --------------------------------------------------------------------------------------------------

def help_text(customer: dict, *, brand: str = DEFAULT_BRAND, contact: str | None = None,
              max_segments: int = MAX_SEGMENTS) -> str:
    """The answer to HELP: who sends these texts and what about, a contact, and how to stop them.

    The contact is the customer record's account manager or ``contact``, else ``contact``, else
    :data:`DEFAULT_CONTACT`. Within ``max_segments``: the brand goes first, then the longer description.
    """
    t = _TEXTS[normalize_language(customer.get("language"))]
    h = t["help"]
    _, value = _contact(customer, contact)
    parts = dict.fromkeys(_ORDER, "")
    parts.update(brand=t["brand"].format(brand=brand) if brand else "",
                 found=h["who"].format(at=h["at"][_segment(customer)]),
                 contact=h["contact"].format(c=value), footer=h["footer"])
    return _fit(parts, [{"brand": ""}, {"found": h["who_short"]}], t["sep"], max_segments)


def still_out_text(customer: dict, *, brand: str = DEFAULT_BRAND, max_segments: int = MAX_SEGMENTS) -> str:
    """The answer to "OUT" / "still out" after a restoration notice: the report is logged and the fault
    reopened for the crews; keep clear of fallen lines."""
    t = _TEXTS[normalize_language(customer.get("language"))]
    s = t["still_out"]
    parts = dict.fromkeys(_ORDER, "")
    parts.update(brand=t["brand"].format(brand=brand) if brand else "",
                 found=s["text"].format(who=s.get("who", {}).get(_segment(customer), "")),
                 safety=s["safety"], footer=t["footer"])
    return _fit(parts, [{"brand": ""}, {"safety": ""}], t["sep"], max_segments)


def rating_thanks_text(customer: dict, rating: int | None = None, *, brand: str = DEFAULT_BRAND,
                       contact: str | None = None, max_segments: int = MAX_SEGMENTS) -> str:
    """The answer to a 1-5 rating of an alert: thanks, and for a 1 or a 2 an apology and a contact."""
    t = _TEXTS[normalize_language(customer.get("language"))]
    r = t["rating"]
    ok = isinstance(rating, int) and not isinstance(rating, bool) and 1 <= rating <= 5
    parts = dict.fromkeys(_ORDER, "")
    parts.update(brand=t["brand"].format(brand=brand) if brand else "",
                 found=r["thanks"].format(r=rating) if ok else r["thanks_plain"], footer=t["footer"])
    if ok and rating <= 2:
        parts["detail"] = r["sorry"].format(c=_contact(customer, contact)[1])
    return _fit(parts, [{"brand": ""}, {"detail": ""}], t["sep"], max_segments)


# --------------------------------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------------------------------

def render_email(alert: dict, customer: dict, *, usage: dict | None = None, brand: str = DEFAULT_BRAND,
                 contact: str | None = None) -> tuple[str, str]:
    """(subject, plain-text body) of the alert email: the SMS's facts in full, with every figure of the
    evidence, the segment's advice, the safety advice, the tip with its formula in words, a contact and
    an unsubscribe line. No segment budget, and no STOP footer (an email is not answered by SMS keywords,
    but the unsubscribe line says how to stop the texts)."""
    m = _message(alert, customer, brand=brand, usage=usage, contact=contact)
    t, e, p = m.t, m.t["email"], m.parts
    nl = "\n"
    title_key = m.key if m.key in e["subject"] else "other"
    title = e["subject"][title_key].format(where=t["where"]["meter" if (alert.get("scope") or {}).get("level")
                                                            == "meter" else "area"])
    subject = (t["brand"].format(brand=brand) if brand else "") + title

    lines = [e["hello"], "", p["found"]]
    if p["detail"]:
        lines.append(p["detail"])
    details = _email_bill(m, alert) if m.key == "bill" else _email_supply(m, alert, customer)
    if details:
        lines += ["", e["details"]] + [f"- {d}" for d in details]
    lines.append("")
    if m.key == "bill":
        lines.append(m.general)
    elif p["advice"]:
        lines.append(e["what_to_do"].format(a=p["advice"]))
    if p["safety"]:
        lines.append(e["safety"].format(s=p["safety"]))
    if m.tip is not None:
        lines += ["", m.tip.text, e["how"].format(b=m.tip.basis)]
    _, value = _contact(customer, contact)
    lines += ["", e["contact"].format(c=value)]
    if brand:
        lines += ["", brand]
    lines += ["", e["unsubscribe"]]
    return subject, nl.join(lines) + nl


def _local_datetime(timestamp: object, tz_name: str | None) -> str | None:
    if not isinstance(timestamp, str):
        return None
    try:
        dt = parse_datetime(timestamp).astimezone(_zone(tz_name))
    except (ValueError, TypeError):
        return None
    return f"{dt:%Y-%m-%d %H:%M} ({tz_name or 'UTC'})"


def _email_supply(m: _Message, alert: dict, customer: dict) -> list[str]:
    e, tt, ev = m.t["email"], m.t["tech"], m.evidence
    out = []
    tz_name = customer.get("timezone")
    started = _local_datetime(alert.get("started_at"), tz_name)
    if started:
        out.append(e["when"].format(t=started))
    if alert.get("status") == "resolved" or m.key.startswith("resolved"):
        ended = _local_datetime(alert.get("resolved_at"), tz_name)
        if ended:
            out.append(e["resolved_at"].format(t=ended))
    scope = _scope_text(tt, alert.get("scope") if isinstance(alert.get("scope"), dict) else {})
    if scope:
        out.append(e["scope"].format(scope=scope, where=m.where))
    measured = []
    kind = str(alert.get("kind") or "")
    if kind == "loose_neutral":
        lo, hi = _volts(ev.get("v_min")), _volts(ev.get("v_max"))
        if lo and hi:
            measured.append(e["swing"].format(lo=lo, hi=hi))
    else:
        low = _volts(ev.get("v_extreme") if kind == "undervoltage" else ev.get("v_min"))
        high = _volts(ev.get("v_extreme") if kind == "overvoltage" else ev.get("v_max"))
        if low and kind not in ("overvoltage", "swell"):
            measured.append(e["lowest"].format(v=low))
        if high and kind not in ("undervoltage", "sag"):
            measured.append(e["highest"].format(v=high))
    band, std = _band(ev), _clean(ev.get("standard"), _MAX_STANDARD_CHARS)
    if band:
        measured.append(e["band"].format(lo=band[0], hi=band[1], std=e["std"].format(std=std) if std else ""))
    nominal = _volts(ev.get("nominal_v"))
    if nominal:
        measured.append(e["nominal"].format(v=nominal))
    if measured:
        out.append(e["measured"].format(m="; ".join(measured) if m.t is _EN else "；".join(measured)))
    n, of = _number(ev.get("meters_abnormal")), _number(ev.get("meters_reporting"))
    if n is not None:
        out.append(e["meters"].format(n=int(n), of=e["of"].format(m=int(of)) if of is not None else ""))
    out_n, total = _number(ev.get("meters_out")), _number(ev.get("meters_total"))
    if out_n is not None and total is not None:
        out.append(e["outage_meters"].format(out=int(out_n), total=int(total)))
    duration = _number(ev.get("duration_s"))
    if duration is not None:
        out.append(e["duration"].format(d=_duration(duration, m.lang)))
    swings = _number(ev.get("swings"))
    if swings is not None:
        out.append(e["swings"].format(n=int(swings)))
    return out


def _duration(seconds: float, lang: str) -> str:
    minutes = max(0, round(seconds / 60))
    h, mins = divmod(minutes, 60)
    if lang == "zh-CN":
        return f"{h}小时{mins}分钟" if h else f"{mins}分钟"
    return f"{h} h {mins} min" if h else f"{mins} min"


def _email_bill(m: _Message, alert: dict) -> list[str]:
    e, b, ev, lang = m.t["email"], m.t["bill"], m.evidence, m.lang
    out = []
    start, end = _iso_date(ev.get("cycle_start")), _iso_date(ev.get("cycle_end"))
    left = _number(ev.get("days_left"))
    if start and end:
        out.append(e["cycle"].format(a=start.isoformat(), b=end.isoformat(),
                                     left=e["left"].format(n=int(left)) if left is not None else ""))
    currency = _bill_currency(ev)
    proj_amt, usual_amt = _number(ev.get("projected_amount")), _number(ev.get("usual_amount"))
    proj_kwh, usual_kwh = _number(ev.get("projected_kwh")), _number(ev.get("usual_kwh"))
    measured = _number(ev.get("measured_kwh"))

    def kwh(v: float) -> str:
        return b["kwh_fmt"].format(v=f"{v:,.1f}")

    if measured is not None:
        amount = ""
        if currency and proj_amt is not None and proj_kwh:     # the price the projection itself used
            amount = e["so_far_amount"].format(m=_money(measured * proj_amt / proj_kwh, currency, lang))
        out.append(e["so_far"].format(kwh=kwh(measured), amount=amount))

    def both(amt: float | None, k: float | None) -> str | None:
        if currency and amt is not None:
            return _money(amt, currency, lang) + (f" ({kwh(k)})" if k is not None and lang == "en" else
                                                  f"（{kwh(k)}）" if k is not None else "")
        return kwh(k) if k is not None else None

    proj = both(proj_amt, proj_kwh)
    interval = ev.get("pct_interval")
    rng = ""
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        lo, hi = _number(interval[0]), _number(interval[1])
        if lo is not None and hi is not None:
            pct = m.t["tech"]["bill_pct"]
            rng = e["range"].format(lo=pct.format(p=round(lo)), hi=pct.format(p=round(hi)))
    if proj:
        out.append(e["projected"].format(proj=proj, range=rng))
    usual = both(usual_amt, usual_kwh)
    if usual:
        basis = b["basis"].get(ev.get("basis")) if isinstance(ev.get("basis"), str) else None
        out.append(e["usual"].format(usual=usual, basis=e["from_basis"].format(basis=basis) if basis else ""))
    drivers = ev.get("drivers")
    if isinstance(drivers, dict):
        names = e["driver_parts"]
        shown = [f"{names[k]} {_number(v):+.0f} %" if lang == "en" else f"{names[k]}{_number(v):+.0f}%"
                 for k, v in drivers.items() if k in names and _number(v) is not None]
        if shown:
            out.append(e["drivers"].format(parts=", ".join(shown) if lang == "en" else "，".join(shown)))
    return out


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


def _bill_currency(ev: dict) -> str | None:
    currency = ev.get("currency") if isinstance(ev.get("currency"), str) else None
    return currency if currency and _CURRENCY.match(currency) else None


def _bill_parts(t: dict, lang: str, ev: dict, segment: str) -> tuple[str, str, str, str, str]:
    """(found, its short form, main change, the segment's general tip, footer) of a bill alert.

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

    currency = _bill_currency(ev)
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
    who = b.get("who", {}).get(segment, "")
    short = b["short"].format(who=who, pct=pct) if pct else b["short_none"].format(who=who)

    driver = _bill_driver(ev.get("driver"), lang)
    detail = b["driver"].format(driver=driver) if driver else ""
    return found, short, detail, b["tip"].get(segment, ""), b["footer"]


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
    return format_money(value, currency, lang)


def _iso_date(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None
