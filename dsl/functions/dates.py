"""Dates and times: read what webhooks send, write what ERPs want.

Every function reads its value the way ``to_datetime`` does: RFC 3339 and
ISO 8601 (``2026-12-04``, ``2026-12-04T10:15:00+01:00``, ``20261204T101500Z``),
epoch seconds or milliseconds (a number or a string of digits; a magnitude of
100,000,000,000 or more is milliseconds), RFC 2822 (``Fri, 04 Dec 2026 10:15:00
+0100``), or text in an explicit strftime ``format``. A value without an offset
is in ``tz`` (default UTC); the result is given in ``tz`` when it is given,
else in the value's own offset. Results are RFC 3339, ``Z`` for UTC, with
milliseconds or microseconds only when there are some.

    >>> to_datetime(1764843300)
    '2025-12-04T10:15:00Z'
    >>> to_datetime("2026-12-04T10:15:00+01:00", None, _zone(2, "UTC"))
    '2026-12-04T09:15:00Z'
    >>> format_datetime("Fri, 04 Dec 2026 23:30:00 -0500", "%Y-%m-%d", _zone(2, "Europe/Berlin"))
    '2026-12-05'
    >>> datetime_add("2026-01-31", "P1M")
    '2026-02-28T00:00:00Z'

Time zones are IANA names (``Europe/Paris``, ``America/New_York``, ``UTC``)
from the system's zoneinfo database or the ``tzdata`` package.
"""
from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .base import ArgError, Function, Param, simple

MAX_TEXT = 100                       # longer "dates" are refused before any parsing
MAX_FORMAT = 200
EPOCH_MS = 100_000_000_000           # at or above: milliseconds (1973-03-03 in ms, year 5138 in s)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_TEXT = re.compile(r"[+-]?\d{1,20}(?:\.\d{1,9})?")
_DIRECTIVES = frozenset("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
_DIRECTIVE = re.compile(r"%(.?)", re.S)
_DURATION = re.compile(r"(-)?P(?:(\d{1,9})Y)?(?:(\d{1,9})M)?(?:(\d{1,9})W)?(?:(\d{1,9})D)?"
                       r"(?:T(?=\d)(?:(\d{1,9})H)?(?:(\d{1,9})M)?(?:(\d{1,9}(?:[.,]\d{1,6})?)S)?)?")
_VALUE = Param("value", ("string", "number"))
_TZ = Param("tz", ("string",), optional=True)


def read(value, index: int = 0, fmt: str | None = None, zone=None) -> datetime:
    """An aware datetime from anything ``to_datetime`` accepts; ArgError otherwise."""
    if type(value) is not str:
        return _from_epoch(Decimal(repr(value)) if type(value) is float else Decimal(value), index)
    text = value.strip()
    if len(text) > MAX_TEXT:
        raise ArgError(index, f"is longer than {MAX_TEXT} characters: not a date")
    if fmt is not None:
        found = _strptime(text, fmt, index)
    elif _EPOCH_TEXT.fullmatch(text):
        return _from_epoch(Decimal(text), index)
    else:
        found = _from_text(text, index)
    return found if found.tzinfo is not None else found.replace(tzinfo=zone or timezone.utc)


def _strptime(text: str, fmt: str, index: int) -> datetime:
    try:
        return datetime.strptime(text, fmt)
    except (ValueError, re.error):
        raise ArgError(index, "does not match the format") from None


def _from_text(text: str, index: int) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError):
        raise ArgError(index, "is not a date or time it can read (RFC 3339, ISO 8601, RFC 2822, "
                              "epoch seconds or milliseconds)") from None


def _from_epoch(seconds: Decimal, index: int) -> datetime:
    if abs(seconds) >= EPOCH_MS:
        seconds /= 1000
    try:
        return _EPOCH + timedelta(microseconds=int(seconds * 1_000_000))
    except OverflowError:
        raise ArgError(index, "is outside the years 1 to 9999") from None


def rfc3339(moment: datetime) -> str:
    """``2026-12-04T10:15:00.250+01:00``; ``Z`` for UTC."""
    text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
            f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
    micro = moment.microsecond
    if micro:
        text += f".{micro // 1000:03d}" if micro % 1000 == 0 else f".{micro:06d}"
    offset = int(moment.utcoffset().total_seconds())
    if offset == 0:
        return text + "Z"
    hours, rest = divmod(abs(offset), 3600)
    minutes, seconds = divmod(rest, 60)
    return text + f"{'-' if offset < 0 else '+'}{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")


def _in_zone(moment: datetime, zone, index: int = 0) -> datetime:
    try:
        return moment.astimezone(zone) if zone is not None else moment
    except (OverflowError, ValueError):
        raise ArgError(index, "is outside the years 1 to 9999 in that time zone") from None


def _zone(index: int, name: str | None):
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ArgError(index, "is not an IANA time zone name (like Europe/Paris or UTC)") from None


def check_format(index: int, fmt: str) -> str:
    """``fmt`` if it only uses portable strftime directives (no widths or flags)."""
    if len(fmt) > MAX_FORMAT:
        raise ArgError(index, f"is longer than {MAX_FORMAT} characters")
    for m in _DIRECTIVE.finditer(fmt):
        if m.group(1) not in _DIRECTIVES:
            raise ArgError(index, f"has %{m.group(1)}, which is not a strftime directive Hookline "
                                  f"supports (%{' %'.join(sorted(_DIRECTIVES - {'%'}))} %%)")
    return fmt


def to_datetime(value, fmt=None, zone=None) -> str:
    return rfc3339(_in_zone(read(value, 0, fmt, zone), zone))


def format_datetime(value, fmt, zone=None) -> str:
    return _in_zone(read(value, 0, None, zone), zone).strftime(fmt)


def _resolver(literals, index, check):
    """``check(index, text)``, done once at load time for a literal argument and kept."""
    known = literals[index] if index < len(literals) and isinstance(literals[index], str) else None
    fixed = check(index, known) if known is not None else None

    def resolve(text):
        if text is None:
            return None
        return fixed if text == known else check(index, text)
    return resolve


def _prepare_to_datetime(literals, env):
    fmt, zone = _resolver(literals, 1, check_format), _resolver(literals, 2, _zone)
    return lambda value, f=None, tz=None: to_datetime(value, fmt(f), zone(tz))


def _prepare_format(literals, env):
    fmt, zone = _resolver(literals, 1, check_format), _resolver(literals, 2, _zone)
    return lambda value, f, tz=None: format_datetime(value, fmt(f), zone(tz))


def duration(index: int, text: str) -> tuple[int, timedelta]:
    """An ISO 8601 duration as (months, the rest): ``P1Y2M`` → 14 months, ``PT90M`` → 90 minutes."""
    m = _DURATION.fullmatch(text) if len(text) <= 64 else None
    if m is None or not any(m.groups()[1:]):
        raise ArgError(index, "is not an ISO 8601 duration (like P1D, PT90M or -P1Y2M3DT4H)")
    sign = -1 if m.group(1) else 1
    years, months, weeks, days, hours, minutes = (int(g or 0) for g in m.groups()[1:7])
    seconds = Decimal((m.group(8) or "0").replace(",", "."))
    try:
        rest = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=float(seconds))
    except OverflowError:
        raise ArgError(index, "is longer than Python's dates reach") from None
    return sign * (years * 12 + months), rest if sign > 0 else -rest


def add(moment: datetime, months: int, rest: timedelta) -> datetime:
    """Calendar months first (the 31st becomes the month's last day), then days and time."""
    if months:
        year, month = divmod(moment.month - 1 + months, 12)
        year += moment.year
        if not 1 <= year <= 9999:
            raise OverflowError
        moment = moment.replace(year=year, month=month + 1,
                                day=min(moment.day, calendar.monthrange(year, month + 1)[1]))
    return moment + rest


def datetime_add(value, text: str, parsed=None) -> str:
    months, rest = parsed or duration(1, text)
    try:
        return rfc3339(add(read(value), months, rest))
    except OverflowError:
        raise ArgError(1, "takes the date outside the years 1 to 9999") from None


def _prepare_add(literals, env):
    parsed = _resolver(literals, 1, duration)
    return lambda value, text: datetime_add(value, text, parsed(text))


FUNCTIONS = (
    Function("now", (), simple(lambda: rfc3339(datetime.now(timezone.utc)))),
    Function("to_datetime", (_VALUE, Param("format", ("string",), optional=True), _TZ), _prepare_to_datetime),
    Function("format_datetime", (_VALUE, Param("format", ("string",)), _TZ), _prepare_format),
    Function("datetime_add", (_VALUE, Param("duration", ("string",))), _prepare_add),
)
