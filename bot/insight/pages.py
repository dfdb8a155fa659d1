"""The inbox's insight pages for supervisors: a customer page and the segment overview.

`register(inbox, channel)` adds to the inbox blueprint (`bot.channels.inbox`):

- ``GET customers/<customer id>``: the customer page (`bot.insight.profile`),
  rendered here with its charts as inline SVG; every opening is written to the
  audit log as ``customer.open``; an unknown id gives a 404 "not found" page;
- ``GET segments``: the segments stored by ``python -m training.segments``
  (sizes, names, weekly trends, most asked topics), with a box to open a
  customer page by id.

Both need the supervisor role (the inbox's session cookie; 401 / 403 otherwise).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import html
import urllib.parse
from typing import Any, Dict, List, Optional, Sequence

from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.insight import profile
from core.settings import PROJECT_ROOT

PAGES = PROJECT_ROOT / "web" / "pages"
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
NO_STORE = {"Cache-Control": "no-store"}


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _day(ts: Optional[float]) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


# ------------------------------------------------------------------ charts (inline SVG)


def line_chart(labels: Sequence[str], series: Dict[str, Sequence[float]], title: str, width: int = 640,
               height: int = 220) -> str:
    """An SVG line chart: one line per series over `labels`, with a legend."""
    if not labels or not series:
        return f'<p class="empty">{esc(title)}: no data.</p>'
    left, right, top, bottom = 40, 230, 24, 30
    top_value = max((max(v) for v in series.values() if len(v)), default=0) or 1
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(labels) - 1)
    parts = [f'<svg class="chart" role="img" aria-label="{esc(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="14" class="title">{esc(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
             f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" class="tick">{top_value:g}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="tick">0</text>']
    every = max(1, len(labels) // 6)
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            parts.append(f'<text x="{left + i * step:.1f}" y="{height - 8}" text-anchor="middle" class="tick">{esc(label)}</text>')
    for n, (name, values) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        points = " ".join(f"{left + i * step:.1f},{top + plot_h - (float(v) / top_value) * plot_h:.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"><title>{esc(name)}</title></polyline>')
        parts.extend(f'<circle cx="{point.split(",")[0]}" cy="{point.split(",")[1]}" r="3" fill="{colour}"/>' for point in points.split())
        parts.append(f'<rect x="{width - right + 10}" y="{top + n * 16}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{width - right + 24}" y="{top + n * 16 + 9}" class="tick">{esc(name[:36])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(pairs: Sequence[Sequence[Any]], title: str, width: int = 640, bar: int = 20) -> str:
    """An SVG horizontal bar chart of (label, value) pairs."""
    if not pairs:
        return f'<p class="empty">{esc(title)}: no data.</p>'
    label_w, height = 230, 24 + len(pairs) * (bar + 6)
    top_value = max(float(v) for _, v in pairs) or 1
    parts = [f'<svg class="chart" role="img" aria-label="{esc(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="0" y="14" class="title">{esc(title)}</text>']
    for i, (label, value) in enumerate(pairs):
        y = 22 + i * (bar + 6)
        w = (float(value) / top_value) * (width - label_w - 60)
        parts.append(f'<text x="{label_w - 6}" y="{y + bar * 0.7:.1f}" text-anchor="end" class="tick">{esc(str(label)[:38])}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" fill="{COLOURS[i % len(COLOURS)]}"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + bar * 0.7:.1f}" class="tick">{float(value):g}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------ pages


def _page(template: str, title: str, body: str) -> str:
    text = (PAGES / template).read_text(encoding="utf-8")
    return text.replace("{{title}}", esc(title)).replace("{{body}}", body)


def not_found_page(customer_id: str) -> str:
    return _page("customer.html", "Customer not found",
                 f'<h1>Customer not found</h1><p id="not-found">No customer with the id <code>{esc(customer_id)}</code> '
                 f'is known: no profile, no linked conversation, no interaction.</p>'
                 f'<p><a href="/webhooks/inbox/segments">Segments</a> · <a href="/webhooks/inbox/">Inbox</a></p>')


def customer_page(view: Dict[str, Any]) -> str:
    """The customer page's HTML for `profile.customer_view`'s dictionary."""
    consent = view["consent"]
    opted_out = consent["suggestions_opt_out"]
    out: List[str] = [f'<h1>Customer <code>{esc(view["id"])}</code></h1>']
    if consent["synthetic"]:
        out.append('<p class="badge synthetic" id="synthetic">SYNTHETIC demo customer</p>')
    out.append('<section id="consent"><h2>Consent</h2>')
    if opted_out:
        out.append('<p class="opted-out" id="opted-out">This customer opted out of profiling and suggestions: '
                   'no interests, segment or suggestions are computed for them.</p>')
    else:
        out.append('<p>Profiling and suggestions: allowed (the customer has not opted out).</p>')
    facts = [("Segment label in the data", view.get("segment_label")), ("Age band", view.get("age_band"))]
    if not opted_out:
        seg = view.get("segment")
        facts.append(("Behaviour segment", f'{seg["name"]}' if seg else "none (run python -m training.segments)"))
    out.append("<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v if v is not None else '-')}</dd>" for k, v in facts) + "</dl></section>")

    out.append('<section id="identity"><h2>Identity across channels</h2>')
    if view["identity"]:
        out.append("<table><tr><th>conversation</th><th>channel</th><th>vouched for by</th><th>linked</th></tr>" + "".join(
            f'<tr><td><code>{esc(i["conversation_id"])}</code></td><td>{esc(i["channel"])}</td>'
            f'<td>{esc(i["verified_by"])}</td><td>{_day(i["since"])}</td></tr>' for i in view["identity"]) + "</table>")
    else:
        out.append('<p class="empty">No conversation is linked to this customer.</p>')
    out.append("</section>")

    out.append('<section id="interests"><h2>Interests by category over time</h2>')
    if opted_out:
        out.append('<p class="empty">Not computed: the customer opted out of profiling.</p>')
    else:
        interests = view["interests"]
        out.append(line_chart(interests["months"], interests["series"], "Weighted interactions per month, top categories"))
        out.append(bar_chart(list(interests["totals"].items())[:10], "All time, by category"))
    out.append("</section>")

    out.append('<section id="timeline"><h2>Conversations</h2>')
    if view["timeline"]:
        rated = view.get("satisfaction") or {}
        out.append("<table><tr><th>conversation</th><th>channel</th><th>first message</th><th>last message</th>"
                   "<th>customer messages</th><th>satisfaction</th></tr>" + "".join(
                       f'<tr><td><code>{esc(c["conversation_id"])}</code></td><td>{esc(c.get("channel"))}</td>'
                       f'<td>{_day(c.get("first"))}</td><td>{_day(c.get("last"))}</td><td>{esc(c.get("messages", 0))}</td>'
                       f'<td>{_rating(rated.get(c["conversation_id"]))}</td></tr>'
                       for c in view["timeline"]) + "</table>")
        dated = [c for c in view["timeline"] if c.get("first")]
        if dated:
            out.append(bar_chart([(_day(c["first"])[:10] + " " + c["conversation_id"][:18], c.get("messages", 0)) for c in dated],
                                 "Customer messages per conversation"))
    else:
        out.append('<p class="empty">No conversation in the tracker store.</p>')
    out.append("</section>")

    ups = sum(1 for r in view["ratings"] if r["rating"] > 0)
    downs = sum(1 for r in view["ratings"] if r["rating"] < 0)
    out.append(f'<section id="ratings"><h2>Ratings and suggestion clicks</h2><p>Answers rated: {ups} up, {downs} down. '
               f'Suggestions clicked: {len(view["clicks"])}.</p>')
    if view["clicks"]:
        out.append("<ul>" + "".join(f'<li>{_day(c["ts"])} {esc(c["title"])}</li>' for c in view["clicks"][:10]) + "</ul>")
    out.append("</section>")

    out.append('<section id="suggestions"><h2>What the recommender would suggest now</h2>')
    if opted_out:
        out.append('<p class="empty">Not computed: the customer opted out of suggestions.</p>')
    elif view["suggestions"]:
        out.append("<table><tr><th>item</th><th>kind</th><th>score</th><th>why</th></tr>" + "".join(
            f'<tr><td>{esc(s["title"] or s["item_id"])}</td><td>{esc(s["kind"])}</td><td>{float(s["score"]):.2f}</td>'
            f'<td>{esc(s["reason"])}</td></tr>' for s in view["suggestions"]) + "</table>")
    else:
        out.append('<p class="empty">Nothing to suggest.</p>')
    out.append("</section>")

    out.append('<section id="sentiment"><h2>Sentiment over time</h2>')
    if view.get("sentiment"):
        days = view["sentiment"]
        out.append(line_chart([d for d, _, _ in days], {"average": [s for _, s, _ in days]}, "Average sentiment per day"))
    else:
        out.append('<p class="empty">No sentiment recorded for this customer\'s conversations.</p>')
    out.append("</section>")
    return _page("customer.html", f"Customer {view['id']}", "".join(out))


def segments_page(segments: List[Dict[str, Any]]) -> str:
    """The segment overview's HTML for `bot.insight.profile.stored_segments`'s rows."""
    out = ['<h1>Customer segments</h1>',
           '<form id="open-customer" action="/webhooks/inbox/customers" method="get">'
           '<label>Customer id <input name="id" id="customer-id" required></label> <button type="submit">Open</button></form>']
    if not segments:
        out.append('<p class="empty" id="no-segments">No segments yet: run <code>python -m training.segments</code>.</p>')
        return _page("segments.html", "Customer segments", "".join(out))
    first = segments[0]
    out.append(f'<p id="summary">{len(segments)} segments of {sum(s["size"] for s in segments)} customers, found by k-means '
               f'on standardized behaviour (silhouette {float(first["silhouette"] or 0):.3f}), computed {_day(first["computed_at"])} UTC.</p>')
    out.append(bar_chart([(s["name"], s["size"]) for s in segments], "Customers per segment"))
    weeks = [dt.datetime.fromtimestamp(w, dt.timezone.utc).strftime("%m-%d") for w, _ in (first["trend"] or [])]
    out.append(line_chart(weeks, {s["name"]: [c for _, c in s["trend"] or []] for s in segments},
                          "Interactions per week, by segment", width=760))
    out.append('<table id="segment-rows"><tr><th>segment</th><th>customers</th><th>top traits (z-score of the centre)</th>'
               '<th>asks about most</th></tr>')
    for s in segments:
        traits = ", ".join(f"{t} {z:+.2f}" for t, z in (s["traits"] or []))
        asked = ", ".join(f"{t} ({c})" for t, c in (s["top_topics"] or [])) or "-"
        out.append(f'<tr><td>{esc(s["name"])}</td><td>{esc(s["size"])}</td><td>{esc(traits)}</td><td>{esc(asked)}</td></tr>')
    out.append("</table>")
    return _page("segments.html", "Customer segments", "".join(out))


def _rating(rating: Optional[Dict[str, Any]]) -> str:
    """A conversation's 1-5 rating as the timeline shows it, or a dash when the customer gave none."""
    if not rating:
        return "—"
    who = "a person" if rating.get("handled_by") == "person" else "the assistant"
    return f'<span class="rating">{esc(rating.get("score"))}/5</span> (served by {who})'


# ------------------------------------------------------------------ conversations from the tracker store


async def conversation_timeline(tracker_store, links: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """First and last message time and customer messages of each linked conversation, from `tracker_store`."""
    timeline = []
    for link in links[:100]:
        entry = {"conversation_id": link["conversation_id"], "channel": link["channel"], "messages": 0,
                 "first": None, "last": None}
        if tracker_store is not None:
            tracker = await tracker_store.retrieve_full_tracker(link["conversation_id"])
            events = list(tracker.events) if tracker else []
            stamps = [e.timestamp for e in events if getattr(e, "timestamp", None)]
            entry["messages"] = sum(1 for e in events if type(e).__name__ == "UserUttered")
            entry["first"], entry["last"] = (min(stamps), max(stamps)) if stamps else (None, None)
        timeline.append(entry)
    return timeline


def _tracker_store(channel) -> Any:
    from bot.handoff.desk import desk_for

    try:
        agent = desk_for(channel.app).agent
    except Exception:  # no desk in this process (a unit test's app)
        return None
    return agent.tracker_store if agent is not None else None


def register(inbox, channel) -> None:
    """Add the insight pages to the inbox blueprint `inbox`, guarded by `channel.staff_only` (an `AgentInbox`)."""

    @inbox.route("/insight.css", methods=["GET"])
    async def style(_: Request) -> HTTPResponse:
        return await response.file(PAGES / "insight.css", mime_type="text/css", headers={"Cache-Control": "no-cache"})

    @inbox.route("/customers", methods=["GET"])
    @channel.staff_only("supervisor")
    async def open_customer(request: Request, session) -> HTTPResponse:
        wanted = (request.args.get("id") or "").strip()
        if not wanted:
            return response.redirect("/webhooks/inbox/segments", status=303)
        return response.redirect("/webhooks/inbox/customers/" + urllib.parse.quote(wanted, safe=""), status=303)

    @inbox.route("/customers/<customer_id:str>", methods=["GET"])
    @channel.staff_only("supervisor")
    async def customer(request: Request, session, customer_id: str) -> HTTPResponse:
        customer_id = urllib.parse.unquote(customer_id)[:128]
        loop = asyncio.get_running_loop()
        view = await loop.run_in_executor(None, profile.customer_view, channel.engine, customer_id, None)
        channel._audit(request, session, "customer.open", customer_id, {"found": view is not None})
        if view is None:
            return response.html(not_found_page(customer_id), status=404, headers=NO_STORE)
        view["timeline"] = await conversation_timeline(_tracker_store(channel), view["identity"])
        return response.html(customer_page(view), headers=NO_STORE)

    @inbox.route("/segments", methods=["GET"])
    @channel.staff_only("supervisor")
    async def segments(request: Request, session) -> HTTPResponse:
        rows = await asyncio.get_running_loop().run_in_executor(None, profile.stored_segments, channel.engine)
        return response.html(segments_page(rows), headers=NO_STORE)
