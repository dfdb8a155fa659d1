"""When people answer the queue: the opening hours and who is signed in.

    support_hours: "Mon-Fri 08:00-20:00; Sat 09:00-13:00"
    support_timezone: "Europe/London"

Days are English three-letter names, single or as a range (``Mon-Fri``,
``Sat``, ``Mon,Wed``); times are 24-hour ``HH:MM-HH:MM`` in the support
timezone. ``always`` (or an empty setting) means every day, all day. A
malformed setting is refused with a message naming it, when the action server
starts answering handoffs.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import List, Optional, Tuple
from zoneinfo import ZoneInfo

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_PART = re.compile(r"^\s*(?P<days>[A-Za-z ,\-]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")


class HoursError(ValueError):
    """A `support_hours` setting that cannot be read."""


def _day(name: str) -> int:
    key = name.strip()[:3].title()
    if key not in DAYS:
        raise HoursError(f"support_hours: {name.strip()!r} is not a day (use Mon, Tue, ... Sun)")
    return DAYS.index(key)


def _time(text: str) -> dt.time:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours == 24 and minutes == 0:
        return dt.time(23, 59, 59)
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise HoursError(f"support_hours: {text!r} is not a time of day")
    return dt.time(hours, minutes)


@dataclasses.dataclass(frozen=True)
class OpeningHours:
    """Days of the week (0 = Monday) with their opening and closing times, in one timezone."""

    spans: Tuple[Tuple[int, dt.time, dt.time], ...]
    timezone: str = "UTC"
    text: str = "always"

    @classmethod
    def parse(cls, text: Optional[str], timezone: str = "UTC") -> "OpeningHours":
        try:
            ZoneInfo(timezone)
        except Exception as exc:
            raise HoursError(f"support_timezone: {timezone!r} is not a known timezone") from exc
        text = (text or "").strip()
        if not text or text.lower() == "always":
            return cls(tuple((d, dt.time(0, 0), dt.time(23, 59, 59)) for d in range(7)), timezone, "every day, all day")
        spans: List[Tuple[int, dt.time, dt.time]] = []
        for part in text.split(";"):
            found = _PART.match(part)
            if found is None:
                raise HoursError(f"support_hours: cannot read {part.strip()!r} (write e.g. 'Mon-Fri 08:00-20:00')")
            start, end = _time(found["start"]), _time(found["end"])
            if end <= start:
                raise HoursError(f"support_hours: {part.strip()!r} closes before it opens")
            for group in found["days"].split(","):
                first, _, last = group.partition("-")
                a, b = _day(first), _day(last) if last.strip() else _day(first)
                for day in range(a, (b if b >= a else b + 7) + 1):
                    spans.append((day % 7, start, end))
        return cls(tuple(spans), timezone, text)

    def is_open(self, when: Optional[dt.datetime] = None) -> bool:
        """Whether `when` (default: now) falls in the opening hours."""
        local = (when or dt.datetime.now(dt.timezone.utc)).astimezone(ZoneInfo(self.timezone))
        return any(day == local.weekday() and start <= local.time() <= end for day, start, end in self.spans)

    def describe(self) -> str:
        """The hours as the setting gives them, with the timezone (for customers)."""
        return f"{self.text} ({self.timezone} time)" if self.text != "every day, all day" else self.text


def from_settings(settings) -> OpeningHours:
    return OpeningHours.parse(settings.support_hours, settings.support_timezone)
