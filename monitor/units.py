"""Sizes and durations as people write them in a config file.

Sizes are binary, as in /proc/meminfo (whose "kB" means 1024 bytes),
``free`` and systemd's ``MemoryMax=``: ``K``, ``KB`` and ``KiB`` all mean
1024 bytes, ``G``/``GB``/``GiB`` mean 1024**3. A size may also be a
percentage (``"40%"``) of a total that the key's documentation names.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# A number, then nothing, "B", or a prefix with an optional "B"/"iB" ("10ib" is no size: issue 28)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])(i?b)?|(b))?\s*$", re.IGNORECASE)
_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# One part: a number and its unit, the unit not run on into a letter ("1 m s" is no "1ms": issue 28)
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w)(?![a-z])\s*", re.IGNORECASE)
MAX_DURATION = 100 * 365 * 86400.0  # longer is a typo (or "9999...9", which float() makes infinite)


class UnitError(ValueError):
    """A value that is not a size or a duration; the message says what is expected."""


@dataclass(frozen=True)
class Size:
    """An absolute byte count or a percentage of some total.

    ``text`` is what the user wrote, so ``config show`` can print it back.
    """

    bytes: int | None = None
    percent: float | None = None
    text: str = ""

    def resolve(self, total: int | None) -> int | None:
        """Bytes this size stands for; a percentage needs the total (None if unknown)."""
        if self.bytes is not None:
            return self.bytes
        if total is None or self.percent is None:
            return None
        return int(total * self.percent / 100)

    def __str__(self) -> str:
        return self.text or (f"{self.percent:g}%" if self.percent is not None else str(self.bytes))


SIZE_EXPECTED = 'a size such as "512MiB", "4GiB", "1.5G", a byte count, or a percentage "40%"'
DURATION_EXPECTED = 'a duration such as "30s", "2m", "1h30m" or a number of seconds'


def parse_size(value: object, *, allow_percent: bool = True) -> Size:
    """Parse ``"4GiB"``, ``"1.5G"``, ``"512MiB"``, ``1073741824`` or ``"40%"``."""
    if isinstance(value, bool):
        raise UnitError(SIZE_EXPECTED)
    if isinstance(value, int):
        if value < 0:
            raise UnitError("a size that is not negative")
        return Size(bytes=value, text=str(value))
    if isinstance(value, float):
        raise UnitError(SIZE_EXPECTED + " (a bare float is ambiguous: write a unit)")
    if not isinstance(value, str):
        raise UnitError(SIZE_EXPECTED)
    text = value.strip()
    if text.startswith("-"):
        raise UnitError("a size that is not negative")
    if m := _PERCENT_RE.match(text):
        if not allow_percent:
            raise UnitError("an absolute size (a percentage has nothing to be a percentage of here)")
        pct = float(m.group(1))
        if pct > 100:
            raise UnitError("a percentage from 0% to 100%")
        return Size(percent=pct, text=text)
    m = _SIZE_RE.match(text)
    if not m:
        raise UnitError(SIZE_EXPECTED)
    number = float(m.group(1))
    if m.group(2) is None and number != int(number):  # "0.5" or "0.5B": no such thing as half a byte
        raise UnitError(SIZE_EXPECTED + " (a byte count is a whole number)")
    scaled = number * _SIZE_UNITS[(m.group(2) or "").lower()]
    if not math.isfinite(scaled) or scaled > 2**63 - 1:
        raise UnitError("a size below 8 EiB")
    return Size(bytes=int(scaled), text=text)


def parse_duration(value: object) -> float:
    """Seconds in ``"30s"``, ``"2m"``, ``"1h30m"``, ``"500ms"`` or a plain number."""
    if isinstance(value, bool):
        raise UnitError(DURATION_EXPECTED)
    if isinstance(value, (int, float)):
        if value < 0:
            raise UnitError("a duration that is not negative")
        return _bounded(float(value))
    if not isinstance(value, str):
        raise UnitError(DURATION_EXPECTED)
    text = value.strip()
    if text.startswith("-"):
        raise UnitError("a duration that is not negative")
    if re.fullmatch(r"\d+(?:\.\d*)?", text):
        return _bounded(float(text))
    parts = list(_DURATION_PART.finditer(text))
    if not text or "".join(m.group(0) for m in parts) != text:
        raise UnitError(DURATION_EXPECTED)
    return _bounded(sum(float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()] for m in parts))


def _bounded(seconds: float) -> float:
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise UnitError("a duration below 100 years")
    return seconds


def format_bytes(n: int | float | None, *, signed: bool = False) -> str:
    """``1610612736`` -> ``"1.5 GiB"``; None -> ``"?"``."""
    if n is None:
        return "?"
    sign = "-" if n < 0 else ("+" if signed and n > 0 else "")
    n = abs(n)
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            value = n / scale
            return f"{sign}{value:.1f} {unit}" if value < 100 else f"{sign}{value:.0f} {unit}"
    return f"{sign}{int(n)} B"


def format_bytes_apart(a: int, b: int) -> tuple[str, str]:
    """Two sizes in words that differ whenever the sizes do: ``1.52 GiB`` and ``1.50 GiB`` where
    :func:`format_bytes` says "1.5 GiB" twice (a crossing "1.5 GiB rose above 1.5 GiB" says nothing)."""
    first, second = format_bytes(a), format_bytes(b)
    if first != second or a == b:
        return first, second
    unit, scale = next(((u, k) for u, k in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
                        if max(abs(a), abs(b)) >= k), ("B", 1))
    for digits in (2, 3):
        first, second = f"{a / scale:.{digits}f} {unit}", f"{b / scale:.{digits}f} {unit}"
        if first != second:
            return first, second
    return f"{a:,} B", f"{b:,} B"


def format_duration(seconds: float | None) -> str:
    """``150`` -> ``"2m30s"``; keeps the two largest units."""
    if seconds is None:
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    seconds = round(seconds)
    out = []
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= scale or (unit == "s" and not out):
            out.append(f"{seconds // scale}{unit}")
            seconds %= scale
    return "".join(out[:2])
