"""Standard 5-field cron expressions: the syntax, checked when the config loads.

:mod:`monitor.watch.scheduling` turns a parsed :class:`CronSpec` into an
APScheduler 3 trigger; this module imports nothing of APScheduler, so loading a
config (and `status`) does not pay for it.

APScheduler 3's ``CronTrigger.from_crontab`` counts day-of-week 0 as Monday,
while cron(5) counts 0 and 7 as Sunday, and it ANDs day-of-month with
day-of-week where cron ORs them when both are restricted. So user input never
reaches ``from_crontab``: we expand every field to the set of values cron(5)
means, then hand APScheduler day *names* (which it reads unambiguously) and,
when both day fields are restricted, an ``OrTrigger`` of the two.

    ┌ minute 0-59   ┌ hour 0-23   ┌ day of month 1-31   ┌ month 1-12 or jan-dec
    │               │             │                     │   ┌ day of week 0-7 or sun-sat (0, 7 = Sunday)
    "*/15           9-17          *                     *   1-5"
"""

from __future__ import annotations

from dataclasses import dataclass

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
EXPECTED = 'a cron expression "m h dom mon dow" (5 fields, e.g. "0 3 * * 0") or @daily/@hourly/@weekly'


class CronError(ValueError):
    """The message completes the sentence "expected ..."."""


@dataclass(frozen=True)
class CronSpec:
    """The sets of values each field allows, as cron(5) means them."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday .. 6 = Saturday
    days_restricted: bool
    weekdays_restricted: bool


_FIELDS = (("minute", 0, 59, None), ("hour", 0, 23, None), ("day of month", 1, 31, None),
           ("month", 1, 12, MONTHS), ("day of week", 0, 7, DAYS))


def parse_cron(text: str) -> CronSpec:
    if not isinstance(text, str) or not text.strip():
        raise CronError(EXPECTED)
    expr = MACROS.get(text.strip().lower(), text)
    parts = expr.split()
    if len(parts) != 5:
        raise CronError(EXPECTED + f"; got {len(parts)} field(s)")
    sets = [_expand(part, *spec) for part, spec in zip(parts, _FIELDS)]
    weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
    return CronSpec(text=text, minutes=sets[0], hours=sets[1], days=sets[2], months=sets[3],
                    weekdays=weekdays, days_restricted=not parts[2].startswith("*"),
                    weekdays_restricted=not parts[4].startswith("*"))


def _expand(part: str, name: str, low: int, high: int, names: list[str] | None) -> frozenset[int]:
    values: set[int] = set()
    for item in part.split(","):
        rng, _, step_text = item.partition("/")
        step = _number(step_text, name, names=None, base=0) if step_text else 1
        if step < 1:
            raise CronError(f"a step of at least 1 in the {name} field")
        if rng == "*":
            start, end = low, high
        elif "-" in rng:
            a, b = rng.split("-", 1)
            start, end = _number(a, name, names, low), _number(b, name, names, low)
        else:
            start = _number(rng, name, names, low)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high):
            raise CronError(f"{name} values from {low} to {high}; got {item!r}")
        if start > end:
            raise CronError(f"a {name} range that goes upward; got {item!r}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _number(text: str, name: str, names: list[str] | None, base: int) -> int:
    if names and text.lower() in names:
        return names.index(text.lower()) + (1 if names is MONTHS else 0)
    if not text.isdigit():
        raise CronError(f"a number in the {name} field; got {text!r}")
    return int(text)
