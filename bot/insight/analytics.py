"""How the assistant serves customers, over a chosen period: figures, plots and an HTML report.

    python -m bot.insight.analytics --since 2026-01-01 --until 2026-01-31 --out reports/analytics
    python -m bot.insight.analytics --tracker postgresql://rasa@db/rasa --db postgresql://app@db/app

Reads the conversations from Rasa's SQL tracker store (table ``events``;
``var/tracker.db`` by default, or the SQLite file named by
``ASSISTANT_TRACKER_DB``, or any SQLAlchemy URL) and the project's own data
(handoffs, ratings, purchases, customers) through `core.db.connect()`; both
work on SQLite and PostgreSQL. Writes PNG plots and ``report.html`` into
``--out`` and prints the headline figures. Dates are UTC days, both ends included.

What each figure counts (docs/analytics.md has the same list):

- conversations: customers (``sender_id``) with at least one message in the period;
- messages: customer messages (typed text and button payloads), bot messages;
- fallback rate: typed messages the NLU could not place (intent ``nlu_fallback``,
  or Rasa's ``action_default_fallback`` ran) / typed messages;
- unanswered: typed messages that ended without an answer (a fallback or a
  "please rephrase" / "out of scope" reply); they are grouped by meaning;
- handoff rate: conversations handed to a person (handoffs table or
  ``action_handoff``) / conversations; containment is the rest;
- ratings: thumbs up and down given in the period (answer_ratings);
- suggestion click-through: suggestion clicks / bot messages that carried
  suggestion buttons; follow-up purchase: clicks after which the customer
  bought the clicked item within ``--follow-up-days``;
- satisfaction (CSAT): end-of-conversation 1-5 ratings given in the period
  (satisfaction table): share of 4-5 among answers, mean and count, overall,
  by intent, by segment and by handled-by (assistant | person);
- sentiment: typed customer messages scored by ``nlu.sentiment`` in the
  period (message_sentiment table): counts per label, share negative,
  reasons of negative messages, per day;
- experiments: each declared experiment over its whole run up to the end of
  the period, from the logged exposures (``bot.insight.experiment_report``):
  per arm customers, exposures, each metric with its 95 % CI, lift and
  p-value against the control, the verdict and the sample sizes it needs.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import io
import json
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import sqlalchemy as sa

from core import crypto, db, satisfaction
from nlu import sentiment_trend
from core.payloads import is_payload
from bot.insight.experiment_report import experiment_report
from bot.insight.experiments import Experiment, load_experiments
from core.settings import PROJECT_ROOT

DAY = 86400.0
# Replies that mean "I could not answer that" (bot/domain responses).
NOT_ANSWERED_RESPONSES = {"utter_please_rephrase", "utter_out_of_scope", "utter_default", "utter_ask_rephrase"}
FALLBACK_ACTIONS = {"action_default_fallback", "action_two_stage_fallback"}
HANDOFF_ACTIONS = {"action_handoff"}
SUGGESTION_PAYLOAD = "/select_suggestion"

# Rasa's SQLTrackerStore table, declared here only to read it.
_tracker_metadata = sa.MetaData()
tracker_events = sa.Table(
    "events",
    _tracker_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sender_id", sa.String(255)),
    sa.Column("type_name", sa.String(255)),
    sa.Column("timestamp", sa.Float),
    sa.Column("intent_name", sa.String(255)),
    sa.Column("action_name", sa.String(255)),
    sa.Column("data", sa.Text),
)


class AnalyticsError(RuntimeError):
    """The tracker store or the project database cannot be read."""


# ----------------------------------------------------------------- reading

def default_tracker_url() -> str:
    """The tracker store the assistant writes: ASSISTANT_TRACKER_URL, ASSISTANT_TRACKER_DB or var/tracker.db."""
    return tracker_url(
        os.environ.get("ASSISTANT_TRACKER_URL") or os.environ.get("ASSISTANT_TRACKER_DB") or str(PROJECT_ROOT / "var" / "tracker.db")
    )


def tracker_url(path_or_url: str) -> str:
    """A SQLAlchemy URL for a tracker store given as a URL or a SQLite file path."""
    return path_or_url if "://" in path_or_url else f"sqlite:///{Path(path_or_url).expanduser().resolve()}"


def parse_day(text: str) -> float:
    """'2026-01-31' -> the UTC timestamp of the start of that day."""
    try:
        day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError as exc:
        raise AnalyticsError(f"dates are written YYYY-MM-DD, got {text!r}") from exc
    return day.timestamp()


def read_events(url: str, since: float, until: float) -> List[Dict[str, Any]]:
    """Tracker events with since <= timestamp < until, in the order they happened."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise AnalyticsError(
            f"no tracker store at {url[len('sqlite:///'):]}: start the assistant and talk to it "
            f"(`make run`), or name the store with --tracker"
        )
    engine = sa.create_engine(url, future=True)
    query = (
        sa.select(tracker_events)
        .where(tracker_events.c.timestamp >= since)
        .where(tracker_events.c.timestamp < until)
        .order_by(tracker_events.c.sender_id, tracker_events.c.id)
    )
    try:
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
    except sa.exc.SQLAlchemyError as exc:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        raise AnalyticsError(f"cannot read the tracker store at {shown} ({exc.__class__.__name__}: {exc}); "
                             f"is it Rasa's SQL tracker store?") from exc
    finally:
        engine.dispose()
    for row in rows:
        try:
            row["data"] = json.loads(crypto.decrypt_text(row["data"]) or "{}")  # encrypted at rest or legacy
        except crypto.EncryptionKeyError as exc:
            raise AnalyticsError(str(exc)) from None
        except ValueError:
            row["data"] = {}
    return rows


def _rows(engine, table: sa.Table, column: sa.Column, since: float, until: float) -> List[Dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).where(column >= since).where(column < until)).mappings()]


# ----------------------------------------------------------------- figures

@dataclass
class Message:
    """One customer message and what the assistant did with it."""

    sender_id: str
    text: str
    intent: Optional[str]
    confidence: Optional[float]
    timestamp: float
    actions: List[str] = field(default_factory=list)
    responses: List[str] = field(default_factory=list)

    @property
    def typed(self) -> bool:
        """Typed by the customer, not a button payload."""
        return not is_payload(self.text)

    @property
    def fallback(self) -> bool:
        """The NLU could not place the message."""
        return self.typed and (self.intent == "nlu_fallback" or bool(FALLBACK_ACTIONS & set(self.actions)))

    @property
    def unanswered(self) -> bool:
        """The message ended without an answer."""
        return self.typed and (bool(FALLBACK_ACTIONS & set(self.actions)) or bool(NOT_ANSWERED_RESPONSES & set(self.responses)))


def messages_from_events(events: Iterable[Dict[str, Any]]) -> Tuple[List[Message], List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(customer messages with their actions and replies, bot events, action events)."""
    messages: List[Message] = []
    bots, actions = [], []
    current: Dict[str, Message] = {}
    for event in events:
        sender, kind, data = event["sender_id"], event["type_name"], event["data"]
        if kind == "user":
            parse = data.get("parse_data") or {}
            intent = (parse.get("intent") or {})
            message = Message(sender, (data.get("text") or "").strip(), event.get("intent_name") or intent.get("name"),
                              intent.get("confidence"), event["timestamp"])
            messages.append(message)
            current[sender] = message
        elif kind == "action":
            actions.append(event)
            name = event.get("action_name") or data.get("name")
            if sender in current and name and name != "action_listen":
                current[sender].actions.append(name)
        elif kind == "bot":
            bots.append(event)
            utter = (data.get("metadata") or {}).get("utter_action")
            if sender in current and utter:
                current[sender].responses.append(utter)
    return messages, bots, actions


def _rate(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _suggestion_items(bot_event: Dict[str, Any]) -> List[str]:
    buttons = ((bot_event["data"].get("data") or {}).get("buttons")) or []
    return [b.get("payload", "") for b in buttons if str(b.get("payload", "")).startswith(SUGGESTION_PAYLOAD)]


def _payload_item(text: str) -> Optional[str]:
    try:
        return json.loads(text[len(SUGGESTION_PAYLOAD):] or "{}").get("item_id")
    except (ValueError, AttributeError):
        return None


def compute(
    events: Sequence[Dict[str, Any]],
    engine,
    since: float,
    until: float,
    experiments: Optional[Sequence[Experiment]] = None,
    follow_up_days: float = 14,
    top: int = 10,
    cluster: bool = True,
    cluster_threshold: float = 0.45,
) -> Dict[str, Any]:
    """Every figure of the report, as plain data (also what the inbox page shows).

    `experiments` default to the declared ones (`load_experiments`); each is
    reported over its whole run up to `until` (`experiment_report`).
    """
    messages, bots, actions = messages_from_events(events)
    conversations = sorted({m.sender_id for m in messages})
    typed = [m for m in messages if m.typed]
    fallbacks = [m for m in typed if m.fallback]
    unanswered = [m for m in typed if m.unanswered]

    handoff_rows = _rows(engine, db.handoffs, db.handoffs.c.created_at, since, until)
    handed = ({h["conversation_id"] for h in handoff_rows}
              | {a["sender_id"] for a in actions if a.get("action_name") in HANDOFF_ACTIONS}) & set(conversations)
    reasons = Counter(h["reason"] for h in handoff_rows)

    ratings = _rows(engine, db.answer_ratings, db.answer_ratings.c.ts, since, until)
    up = sum(1 for r in ratings if r["rating"] > 0)
    down = sum(1 for r in ratings if r["rating"] < 0)
    downvoted = Counter(r["answer_id"] for r in ratings if r["rating"] < 0).most_common(5)

    # Suggestions: impressions from bot messages, clicks from button payloads, purchases from interactions.
    impressions = [b for b in bots if _suggestion_items(b)]
    clicks = [(m.sender_id, _payload_item(m.text), m.timestamp) for m in messages if m.text.startswith(SUGGESTION_PAYLOAD)]
    with engine.connect() as conn:
        purchases = [dict(r) for r in conn.execute(
            sa.select(db.interactions).where(db.interactions.c.kind == "purchase")
            .where(db.interactions.c.ts >= since).where(db.interactions.c.ts < until + follow_up_days * DAY)
        ).mappings()]
    bought = defaultdict(list)
    for p in purchases:
        bought[(p["customer_id"], p["item_id"])].append(p["ts"])
    window = follow_up_days * DAY
    followed = [c for c in clicks if any(c[2] <= t <= c[2] + window for t in bought[(c[0], c[1])])]

    intents = Counter(m.intent for m in typed if m.intent)
    top_intents = intents.most_common(top)
    middle = since + (min(until, max([m.timestamp for m in messages], default=since) + 1) - since) / 2
    trends = []
    for name, count in top_intents:
        first = sum(1 for m in typed if m.intent == name and m.timestamp < middle)
        trends.append({"intent": name, "count": count, "first_half": first, "second_half": count - first})
    daily = defaultdict(Counter)
    for m in typed:
        daily[dt.datetime.fromtimestamp(m.timestamp, dt.timezone.utc).strftime("%Y-%m-%d")][m.intent] += 1

    figures: Dict[str, Any] = {
        "period": {"since": since, "until": until},
        "conversations": len(conversations),
        "customer_messages": len(messages),
        "typed_messages": len(typed),
        "bot_messages": len(bots),
        "fallbacks": len(fallbacks),
        "fallback_rate": _rate(len(fallbacks), len(typed)),
        "unanswered": len(unanswered),
        "handoffs": len(handoff_rows),
        "handed_off_conversations": len(handed),
        "handoff_rate": _rate(len(handed), len(conversations)),
        "containment": _rate(len(conversations) - len(handed), len(conversations)),
        "handoff_reasons": dict(reasons.most_common()),
        "ratings": {"up": up, "down": down, "up_share": _rate(up, up + down), "most_downvoted": downvoted},
        "suggestions": {
            "impressions": len(impressions),
            "clicks": len(clicks),
            "click_through": _rate(len(clicks), len(impressions)),
            "follow_up_purchases": len(followed),
            "follow_up_rate": _rate(len(followed), len(clicks)),
            "follow_up_days": follow_up_days,
        },
        "top_intents": top_intents,
        "intent_trends": trends,
        "daily": {day: dict(counts) for day, counts in sorted(daily.items())},
        "unanswered_groups": unanswered_groups([m.text for m in unanswered], cluster_threshold) if cluster else [],
        "segments": customer_segments(engine, conversations),
        "experiments": experiment_report(engine, load_experiments() if experiments is None else experiments,
                                         as_of=min(until, time.time()), follow_up_days=follow_up_days),
        "satisfaction": satisfaction.summary(engine, since, until),
        "sentiment": sentiment_trend(engine, since, until),
    }
    return figures


def unanswered_groups(texts: Sequence[str], threshold: float = 0.45, samples: int = 3,
                      embed: Optional[Callable[[List[str]], Any]] = None) -> List[Dict[str, Any]]:
    """The unanswered questions grouped by meaning, largest group first.

    Questions are embedded with the project's encoder and joined by
    average-linkage clustering while their cosine distance stays under
    `threshold`. Each group has its size, the question nearest its centre as
    a label, and up to `samples` distinct examples.
    """
    import numpy as np

    texts = [t for t in texts if t]
    if not texts:
        return []
    if embed is None:
        from core.encoder import load_encoder
        from core.settings import get_settings

        encoder = load_encoder(get_settings().encoder)
        embed = lambda batch: encoder.encode(batch, batch_size=64, normalize_embeddings=True)  # noqa: E731
    vectors = np.asarray(embed(list(texts)), dtype="float32")
    if len(texts) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(n_clusters=None, affinity="cosine", linkage="average",
                                         distance_threshold=threshold).fit_predict(vectors)
    groups = []
    for label in set(labels.tolist()):
        members = [i for i in range(len(texts)) if labels[i] == label]
        centre = vectors[members].mean(0)
        ordered = sorted(members, key=lambda i: -float(vectors[i] @ centre))
        distinct = list(dict.fromkeys(texts[i] for i in ordered))
        groups.append({"size": len(members), "label": distinct[0], "examples": distinct[:samples]})
    return sorted(groups, key=lambda g: (-g["size"], g["label"]))


def customer_segments(engine, active: Sequence[str]) -> List[Dict[str, Any]]:
    """Customers per segment from their profiles: how many, how many talked to us, what they did."""
    active = set(active)
    with engine.connect() as conn:
        customers = [dict(r) for r in conn.execute(sa.select(db.customers.c.id, db.customers.c.segment,
                                                             db.customers.c.age_band)).mappings()]
        kinds = conn.execute(sa.select(db.interactions.c.customer_id, db.interactions.c.kind, sa.func.count())
                             .group_by(db.interactions.c.customer_id, db.interactions.c.kind)).all()
    per_customer = defaultdict(Counter)
    for customer_id, kind, n in kinds:
        per_customer[customer_id][kind] += int(n)
    segments: Dict[str, Dict[str, Any]] = {}
    for c in customers:
        name = c["segment"] or "unknown"
        s = segments.setdefault(name, {"segment": name, "customers": 0, "in_period": 0, "purchases": 0,
                                       "interactions": 0, "age_bands": Counter()})
        s["customers"] += 1
        s["in_period"] += c["id"] in active
        s["purchases"] += per_customer[c["id"]]["purchase"]
        s["interactions"] += sum(per_customer[c["id"]].values())
        s["age_bands"][c["age_band"] or "unknown"] += 1
    for s in segments.values():
        s["age_bands"] = dict(s["age_bands"].most_common())
        s["interactions_per_customer"] = _rate(s["interactions"], s["customers"])
    return sorted(segments.values(), key=lambda s: -s["customers"])


# ----------------------------------------------------------------- output

def plots(figures: Dict[str, Any]) -> Dict[str, bytes]:
    """The report's charts as PNG bytes, by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: Dict[str, bytes] = {}

    def save(name: str, fig) -> None:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        charts[name] = buffer.getvalue()

    days = list(figures["daily"])
    if days:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.bar(days, [sum(figures["daily"][d].values()) for d in days], color="#4c72b0", label="all")
        for item in figures["top_intents"][:5]:
            ax.plot(days, [figures["daily"][d].get(item[0], 0) for d in days], marker="o", label=item[0])
        ax.set_title("Customer messages per day, top intents")
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        save("messages_per_day.png", fig)
    if figures["top_intents"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names = [i[0] for i in figures["top_intents"]][::-1]
        ax.barh(names, [i[1] for i in figures["top_intents"]][::-1], color="#55a868")
        ax.set_title("Top intents")
        save("top_intents.png", fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    outcome = {"contained": figures["conversations"] - figures["handed_off_conversations"],
               **{f"handoff: {r}": n for r, n in figures["handoff_reasons"].items()}}
    ax.bar(list(outcome), list(outcome.values()), color="#c44e52")
    ax.set_title("Conversations: contained vs handed off (by reason)")
    ax.tick_params(axis="x", rotation=20, labelsize=8)
    save("containment.png", fig)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(["thumbs up", "thumbs down"], [figures["ratings"]["up"], figures["ratings"]["down"]], color=["#55a868", "#c44e52"])
    ax.set_title("Answer ratings")
    save("ratings.png", fig)
    if figures["segments"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        seg = figures["segments"]
        ax.bar([s["segment"] for s in seg], [s["customers"] for s in seg], label="customers", color="#8172b2")
        ax.bar([s["segment"] for s in seg], [s["in_period"] for s in seg], label="talked to us", color="#ccb974")
        ax.legend()
        ax.set_title("Customer segments")
        save("segments.png", fig)
    for index, exp in enumerate(e for e in figures["experiments"] if any(a["customers"] for a in e["arms"])):
        fig, ax = plt.subplots(figsize=(5, 3))
        rates = [a["metrics"][exp["metric"]] for a in exp["arms"]]
        ax.bar([a["arm"] for a in exp["arms"]], [m["rate"] or 0.0 for m in rates], color="#4c72b0",
               yerr=[[(m["rate"] or 0.0) - (m["ci"][0] or 0.0) for m in rates],
                     [(m["ci"][1] or 0.0) - (m["rate"] or 0.0) for m in rates]], capsize=4)
        ax.set_title(f"{exp['name']}: {exp['metric']} (95 % CI)")
        save(f"experiment-{index}.png", fig)
    return charts


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d")


def headline(figures: Dict[str, Any]) -> List[str]:
    """The figures a team looks at first, one per line."""
    s, r = figures["suggestions"], figures["ratings"]
    until = figures["period"]["until"] - DAY
    return [
        f"period               {_day(figures['period']['since'])} .. {_day(until)}",
        f"conversations        {figures['conversations']}",
        f"messages             {figures['customer_messages']} from customers ({figures['typed_messages']} typed), "
        f"{figures['bot_messages']} from the assistant",
        f"containment          {figures['containment']:.1%}",
        f"fallback rate        {figures['fallback_rate']:.1%} ({figures['fallbacks']} messages)",
        f"unanswered           {figures['unanswered']} messages in {len(figures['unanswered_groups'])} groups",
        f"handoff rate         {figures['handoff_rate']:.1%} ({figures['handoffs']} handoffs: "
        + (", ".join(f"{k} {v}" for k, v in figures["handoff_reasons"].items()) or "none") + ")",
        f"ratings              {r['up']} up, {r['down']} down ({r['up_share']:.1%} up)",
        f"suggestions          {s['impressions']} shown, {s['clicks']} clicked ({s['click_through']:.1%}), "
        f"{s['follow_up_purchases']} bought within {s['follow_up_days']:g} days ({s['follow_up_rate']:.1%})",
        "top intents          " + (", ".join(f"{n} {c}" for n, c in figures["top_intents"][:5]) or "none"),
        *[f"experiment           {e['name']}: {e['verdict']}" for e in figures["experiments"]],
        satisfaction.table_lines(figures["satisfaction"])[0],
        f"sentiment            {figures['sentiment']['messages']} messages scored, "
        f"{figures['sentiment']['negative_share']:.1%} negative ("
        + (", ".join(f"{k} {v}" for k, v in figures["sentiment"]["counts"].items())) + ")",
    ]


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1%}"


def _interval(ci: Sequence[Optional[float]]) -> str:
    return "-" if ci[0] is None else f"{ci[0]:+.1%} .. {ci[1]:+.1%}"


def experiment_html(exp: Dict[str, Any], chart: str) -> str:
    """One experiment: verdict, per-arm customers, exposures and every metric with its 95 % CI, lift and p-value."""
    metrics = [exp["metric"], *[g for g in exp["guardrails"] if g != exp["metric"]]]
    rows = []
    for arm in exp["arms"]:
        for metric in metrics:
            m = arm["metrics"][metric]
            low, high = m["ci"]
            rows.append((arm["arm"], arm["customers"], arm["exposures"],
                         metric + (" (decides)" if metric == exp["metric"] else " (guardrail)"),
                         f"{m['successes']} / {m['trials']}", _percent(m["rate"]),
                         "-" if low is None else f"{low:.1%} .. {high:.1%}",
                         "control" if arm["arm"] == exp["control"] else
                         ("-" if m.get("lift") is None else f"{m['lift']:+.1%}"),
                         _interval(m.get("lift_ci", (None, None))),
                         "-" if "p_value" not in m else f"{m['p_value']:.3g}",
                         "-" if "p_adjusted" not in m else f"{m['p_adjusted']:.3g}"))
    sizes = ", ".join(f"+{lift:.0%}: {n if n is not None else '-'}" for lift, n in exp["required_per_arm"].items())
    notes = [f"moved between arms: {exp['moved_customers']} customers"] if exp["moved_customers"] else []
    notes += [f"arm {arm} no longer declared: {n} customers left out" for arm, n in exp["undeclared_arms"].items()]
    return "\n".join([
        f"<h3>{html.escape(exp['name'])} ({html.escape(exp['surface'])}{'' if exp['enabled'] else ', disabled'})</h3>",
        f"<p><b>Verdict: {html.escape(exp['verdict'])}</b> ({html.escape(exp['verdict_reason'])}). "
        f"{exp['days_run']:.1f} of {exp['max_days']:g} days, at least {exp['min_exposures']} customers per arm, "
        f"alpha {exp['alpha']:g}, guardrail tolerance {exp['guardrail_tolerance']:g}.</p>",
        chart,
        _table(["arm", "customers", "exposures", "metric", "successes / trials", "rate", "95 % CI",
                f"lift vs {exp['control']}", "lift 95 % CI", "p", "p (Holm)"], rows),
        f"<p>Customers per arm the control's {html.escape(exp['metric'])} rate needs for 80 % power "
        f"(relative lift): {html.escape(sizes)}.</p>",
        *[f"<p>{html.escape(n)}</p>" for n in notes],
    ])


def render_html(figures: Dict[str, Any], charts: Dict[str, bytes], inline: bool = False) -> str:
    """The HTML report; charts are linked files, or embedded (`inline`) for a page served on its own."""
    def img(name: str) -> str:
        if name not in charts:
            return ""
        src = f"data:image/png;base64,{base64.b64encode(charts[name]).decode()}" if inline else name
        return f'<img src="{src}" alt="{html.escape(name)}">'

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Assistant analytics</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}img{max-width:100%;margin:.5em 0}</style>",
        "</head><body><h1>Assistant analytics</h1>",
        "<pre>" + html.escape("\n".join(headline(figures))) + "</pre>",
        "<h2>Traffic and intents</h2>", img("messages_per_day.png"), img("top_intents.png"),
        _table(["intent", "messages", "first half", "second half", "trend"],
               [(t["intent"], t["count"], t["first_half"], t["second_half"],
                 f"{t['second_half'] - t['first_half']:+d}") for t in figures["intent_trends"]]),
        "<h2>Containment and handoffs</h2>", img("containment.png"),
        _table(["reason", "handoffs"], figures["handoff_reasons"].items()),
        "<h2>Answer ratings</h2>", img("ratings.png"),
        _table(["most down-voted answer", "thumbs down"], figures["ratings"]["most_downvoted"]),
        "<h2>Questions the assistant could not answer</h2>",
        _table(["group", "questions", "examples"],
               [(g["label"], g["size"], " | ".join(g["examples"])) for g in figures["unanswered_groups"]]),
        "<h2>Experiments</h2>",
        *[experiment_html(e, img(f"experiment-{i}.png"))
          for i, e in enumerate(e for e in figures["experiments"] if any(a["customers"] for a in e["arms"]))],
        *[experiment_html(e, "") for e in figures["experiments"] if not any(a["customers"] for a in e["arms"])],
        "" if figures["experiments"] else "<p>No experiment is declared (bot/experiments.yml).</p>",
        "<p>Experiments: each customer counts once, in the arm of their first exposure, with outcomes in the "
        "follow-up window after it; p: two-sided two-proportion z-test against the control (the first arm), "
        "Holm-adjusted across arms for the verdict. The test is fixed-horizon: no verdict but keep running until "
        "every arm has its minimum of customers or the experiment reaches max_days (docs/experiments.md).</p>",
        "<h2>Satisfaction (CSAT)</h2>",
        "<p>CSAT: share of 4 and 5 among the end-of-conversation 1-5 ratings.</p>",
        *[_table([title, "answers", "CSAT", "mean", "1", "2", "3", "4", "5"],
                 [(g[field], g["count"], "-" if g["csat"] is None else f"{g['csat']:.1%}",
                   "-" if g["mean"] is None else g["mean"], *g["scores"].values()) for g in groups])
          for title, field, groups in (
              ("overall", "name", [{"name": "all", **figures["satisfaction"]["overall"]}]),
              ("intent", "intent", figures["satisfaction"]["by_intent"]),
              ("segment", "segment", figures["satisfaction"]["by_segment"]),
              ("handled by", "handled_by", figures["satisfaction"]["by_handled_by"]))],
        "<h2>Customer segments</h2>", img("segments.png"),
        _table(["segment", "customers", "talked to us in the period", "interactions per customer", "purchases", "age bands"],
               [(s["segment"], s["customers"], s["in_period"], s["interactions_per_customer"], s["purchases"],
                 ", ".join(f"{k} {v}" for k, v in s["age_bands"].items())) for s in figures["segments"]]),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def analyse(since: float, until: float, tracker: Optional[str] = None, db_url: Optional[str] = None,
            **options: Any) -> Dict[str, Any]:
    """Read the stores and compute every figure for since <= t < until (options: those of `compute`)."""
    events = read_events(tracker_url(tracker) if tracker else default_tracker_url(), since, until)
    return compute(events, db.connect(db_url), since, until, **options)


def main(argv: Optional[List[str]] = None) -> int:
    today = dt.datetime.now(dt.timezone.utc).date()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--since", default=(today - dt.timedelta(days=30)).isoformat(), help="first day, YYYY-MM-DD (default: 30 days ago)")
    parser.add_argument("--until", default=today.isoformat(), help="last day included, YYYY-MM-DD (default: today)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "analytics", help="folder for the PNGs and report.html")
    parser.add_argument("--tracker", help="tracker store: SQLite file or SQLAlchemy URL (default: var/tracker.db)")
    parser.add_argument("--db", help="project database URL (default: the configured one)")
    parser.add_argument("--follow-up-days", type=float, default=14,
                        help="days after a click (or a customer's first exposure to an experiment) in which outcomes count")
    parser.add_argument("--cluster-threshold", type=float, default=0.45, help="cosine distance under which unanswered questions group")
    parser.add_argument("--json", action="store_true", help="also write figures.json")
    args = parser.parse_args(argv)
    try:
        since, until = parse_day(args.since), parse_day(args.until) + DAY
        if until <= since:
            raise AnalyticsError(f"--until {args.until} is before --since {args.since}")
        figures = analyse(since, until, args.tracker, args.db,
                          follow_up_days=args.follow_up_days, cluster_threshold=args.cluster_threshold)
    except (AnalyticsError, db.DatabaseUnavailableError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    charts = plots(figures)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, png in charts.items():
        (args.out / name).write_bytes(png)
    (args.out / "report.html").write_text(render_html(figures, charts), encoding="utf-8")
    if args.json:
        (args.out / "figures.json").write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    print("\n".join(headline(figures)))
    for group in figures["unanswered_groups"][:5]:
        print(f"  unanswered x{group['size']}: {group['label']!r}")
    print("\n".join(satisfaction.table_lines(figures["satisfaction"])[1:]))
    print(f"wrote {args.out / 'report.html'} and {len(charts)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
