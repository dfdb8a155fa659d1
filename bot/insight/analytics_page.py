"""The analytics page of the agent inbox: the same report as `python -m bot.insight.analytics`.

The inbox mounts `render_analytics_html(since, until)` behind its login; the
charts are embedded in the page, so nothing is written to disk.
"""
from __future__ import annotations

import datetime as dt
import html
from typing import Optional, Tuple, Union

from bot.insight.analytics import DAY, AnalyticsError, analyse, plots, render_html
from core.db import DatabaseUnavailableError

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
    today = dt.datetime.now(dt.timezone.utc).date()
    start = _timestamp(since, today - dt.timedelta(days=30))
    end = _timestamp(until, today) + (DAY if not isinstance(until, (int, float, dt.datetime)) else 0)
    try:
        figures = analyse(start, end, tracker=tracker, db_url=db_url)
    except (AnalyticsError, DatabaseUnavailableError, ValueError) as exc:
        return f"<!doctype html><html><body><h1>Assistant analytics</h1><p>{html.escape(str(exc))}</p></body></html>"
    return render_html(figures, plots(figures), inline=True)


RANGE_STYLE = ("<style>.range{background:#f3f4f6;padding:8px 12px;border-radius:6px;margin:0 0 1em}"
               ".range-error{background:#fee2e2;padding:6px 10px;border-radius:4px}</style>")


def range_form(since: str = "", until: str = "") -> str:
    """The date-range picker shown above the report (GET, so the range is in the address)."""
    return (f'{RANGE_STYLE}<form class="range" id="range" method="get" action="/webhooks/inbox/analytics">'
            f'<label>From <input type="date" name="since" id="since" value="{html.escape(since)}"></label> '
            f'<label>to <input type="date" name="until" id="until" value="{html.escape(until)}"></label> '
            f'<button type="submit">Show</button> <a href="/webhooks/inbox/">Inbox</a> · '
            f'<a href="/webhooks/inbox/segments">Segments</a></form>')


def _message_page(since: str, until: str, message: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Assistant analytics</title></head>"
            f"<body><h1>Assistant analytics</h1>{range_form(since, until)}"
            f'<p class="range-error" id="range-message">{html.escape(message)}</p></body></html>')


def analytics_page(since: Optional[str] = None, until: Optional[str] = None, tracker: Optional[str] = None,
                   db_url: Optional[str] = None) -> Tuple[int, str]:
    """(status, HTML) of the inbox's analytics page for the UTC days since..until, with the range picker.

    400 with a clear message for a date that is not YYYY-MM-DD or a reversed
    range (until before since); a range with no conversation says so above
    the (empty) report.
    """
    since, until = (since or "").strip(), (until or "").strip()
    today = dt.datetime.now(dt.timezone.utc).date()
    try:
        first = dt.date.fromisoformat(since) if since else today - dt.timedelta(days=30)
        last = dt.date.fromisoformat(until) if until else today
    except ValueError:
        return 400, _message_page(since, until, "Dates are written YYYY-MM-DD (for example 2026-01-31).")
    if last < first:
        return 400, _message_page(since, until, f"The range is reversed: {last.isoformat()} is before "
                                                f"{first.isoformat()}. Pick a start date on or before the end date.")
    try:
        figures = analyse(_timestamp(first, today), _timestamp(last, today) + DAY, tracker=tracker, db_url=db_url)
    except (AnalyticsError, DatabaseUnavailableError, ValueError) as exc:
        return 200, _message_page(first.isoformat(), last.isoformat(), str(exc))
    page = render_html(figures, plots(figures), inline=True)
    top = range_form(first.isoformat(), last.isoformat())
    if not figures["conversations"]:
        top += (f'<p class="range-error" id="range-message">No conversations from {first.isoformat()} to '
                f'{last.isoformat()}: the range is empty. Pick another range.</p>')
    return 200, page.replace("<h1>Assistant analytics</h1>", "<h1>Assistant analytics</h1>" + top, 1)
