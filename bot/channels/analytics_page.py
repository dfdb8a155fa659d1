"""The analytics page of the agent inbox: the same report as `python -m training.analytics`.

The inbox mounts `render_analytics_html(since, until)` behind its login; the
charts are embedded in the page, so nothing is written to disk.
"""
from __future__ import annotations

import datetime as dt
import html
from typing import Optional, Union

DateLike = Union[str, dt.date, dt.datetime, float, None]


def _timestamp(value: DateLike, default: dt.date) -> float:
    if value is None or value == "":
        value = default
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = dt.date.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc).timestamp()


def render_analytics_html(since: DateLike = None, until: DateLike = None, tracker: Optional[str] = None,
                          db_url: Optional[str] = None) -> str:
    """The analytics report for the UTC days since..until (both included; default: the last 30 days).

    `tracker` and `db_url` default to the assistant's stores. A store that
    cannot be read gives a page that says so instead of an error.
    """
    from training.analytics import DAY, AnalyticsError, analyse, plots, render_html
    from core.db import DatabaseUnavailableError

    today = dt.datetime.now(dt.timezone.utc).date()
    start = _timestamp(since, today - dt.timedelta(days=30))
    end = _timestamp(until, today) + (DAY if not isinstance(until, (int, float, dt.datetime)) else 0)
    try:
        figures = analyse(start, end, tracker=tracker, db_url=db_url)
    except (AnalyticsError, DatabaseUnavailableError, ValueError) as exc:
        return f"<!doctype html><html><body><h1>Assistant analytics</h1><p>{html.escape(str(exc))}</p></body></html>"
    return render_html(figures, plots(figures), inline=True)
