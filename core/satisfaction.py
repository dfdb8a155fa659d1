"""Customer satisfaction (CSAT): when to ask for the 1-5 rating, storing the answer, the figures.

The one writer of the ``satisfaction`` table (core/db.py, v6). At the end of a
conversation (a goodbye, a completed card freeze, a person handing the
conversation back) the customer is offered five buttons whose payloads are
``/rate_service{"score": N}``. `should_ask` decides whether to offer them:

- at most once per conversation (the ``satisfaction_asked`` slot, and a
  stored rating for the conversation);
- never after a "no more questions" ending: the customer said no to "anything
  else?" (intent ``deny``), turned suggestions off, or wrote "no more
  questions", "nothing else", "that's all" and the like;
- never during a complaint or frustration: a ``complaint`` intent in this
  session, or a handoff in this session whose reason was a complaint or
  frustration.

CSAT is the share of answers that are 4 or 5; the mean and the count go with it.
"""
from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Optional, Sequence

import sqlalchemy as sa

from core import db

logger = logging.getLogger(__name__)

SCORES = (1, 2, 3, 4, 5)
SATISFIED = (4, 5)
ASKED_SLOT = "satisfaction_asked"
ASK_RESPONSE = "utter_ask_satisfaction"
RATE_INTENT = "rate_service"
NO_MORE_INTENTS = {"deny", "no_suggestions"}
UPSET_INTENTS = {"complaint"}
UPSET_HANDOFF_REASONS = {"complaint", "frustration"}
NO_MORE_QUESTIONS = re.compile(
    r"\b(no (more|further|other) (questions?|help)|nothing (else|more)|that'?s (all|it)|that is (all|it)|"
    r"(i'?m|i am) (all )?(done|good|fine|sorted))\b",
    re.IGNORECASE,
)
# Intents that say nothing about what a conversation was about.
CONVERSATION_INTENTS = {
    "greet", "goodbye", "thanks", "affirm", "deny", "bot_challenge", "inform_card_digits", "inform", "nlu_fallback",
    "rate_answer", "rate_service", "select_suggestion", "no_suggestions", "out_of_scope",
}
STORAGE_ERRORS = (db.DatabaseUnavailableError, sa.exc.SQLAlchemyError, OSError)


def buttons() -> List[Dict[str, str]]:
    """The five one-tap answers, 1 (poor) to 5 (excellent)."""
    return [{"title": str(n), "payload": '/rate_service{"score": %d}' % n} for n in SCORES]


def parse_score(value: Any) -> Optional[int]:
    """1..5 from an entity value (4, "4", "4.0"), else None."""
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and int(number) in SCORES else None


# ------------------------------------------------------------ when to ask


def _session(events: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The events of the current session (after the latest session_started)."""
    for i in range(len(events) - 1, -1, -1):
        if events[i].get("event") == "session_started":
            return list(events[i + 1:])
    return list(events)


def session_start(events: Sequence[Dict[str, Any]]) -> float:
    for event in reversed(events):
        if event.get("event") == "session_started":
            return float(event.get("timestamp") or 0.0)
    return 0.0


def _user_events(events: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [e for e in events if e.get("event") == "user"]


def _intent(event: Dict[str, Any]) -> Optional[str]:
    return ((event.get("parse_data") or {}).get("intent") or {}).get("name")


def conversation_intent(events: Sequence[Dict[str, Any]]) -> Optional[str]:
    """What the session was about: its latest intent that is not small talk or a button."""
    for event in reversed(_user_events(_session(events))):
        name = _intent(event)
        if name and name not in CONVERSATION_INTENTS:
            return name
    return None


def reason_not_to_ask(events: Sequence[Dict[str, Any]], asked: bool, upset_handoff: bool = False,
                      rated: bool = False) -> Optional[str]:
    """Why the rating must not be offered now, or None when it may be.

    `events`: the conversation's tracker events as dicts; `asked`: the slot;
    `upset_handoff`: a handoff in this session for a complaint or frustration;
    `rated`: a rating is already stored for the conversation.
    """
    if asked or rated:
        return "already asked"
    users = _user_events(_session(events))
    if any(_intent(e) in UPSET_INTENTS for e in users):
        return "complaint"
    if upset_handoff:
        return "complaint or frustration handed to a person"
    if users:
        latest = users[-1]
        if _intent(latest) in NO_MORE_INTENTS or NO_MORE_QUESTIONS.search(latest.get("text") or ""):
            return "no more questions"
        if len(users) > 1 and _intent(users[-2]) in NO_MORE_INTENTS and _intent(latest) == "goodbye":
            return "no more questions"
    return None


# ------------------------------------------------------------ the database


def _engine(db_url: Optional[str]):
    if db_url is None:
        from core.settings import get_settings

        db_url = get_settings().database_url
    return db.connect(db_url)


def handoffs_since(conversation_id: str, since: float, db_url: Optional[str] = None) -> List[Dict[str, Any]]:
    with _engine(db_url).connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.select(db.handoffs.c.reason, db.handoffs.c.agent, db.handoffs.c.status)
            .where(db.handoffs.c.conversation_id == conversation_id)
            .where(db.handoffs.c.created_at >= since)).mappings()]


def upset_handoff(conversation_id: str, since: float, db_url: Optional[str] = None) -> bool:
    return any(h["reason"] in UPSET_HANDOFF_REASONS for h in handoffs_since(conversation_id, since, db_url))


def handled_by(conversation_id: str, since: float = 0.0, db_url: Optional[str] = None) -> str:
    """"person" when an agent took the conversation over in this session, else "assistant"."""
    taken = any(h["agent"] for h in handoffs_since(conversation_id, since, db_url))
    return "person" if taken else "assistant"


def segment_of(customer_id: Optional[str], db_url: Optional[str] = None) -> Optional[str]:
    if not customer_id:
        return None
    with _engine(db_url).connect() as conn:
        return conn.execute(sa.select(db.customers.c.segment).where(db.customers.c.id == customer_id)).scalar()


def of_conversation(conversation_id: str, db_url: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The conversation's stored rating (score, intent, handled_by, segment, ts), or None."""
    with _engine(db_url).connect() as conn:
        row = conn.execute(sa.select(db.satisfaction).where(db.satisfaction.c.conversation_id == conversation_id)
                           ).mappings().first()
    return dict(row) if row else None


def record(conversation_id: str, score: int, customer_id: Optional[str] = None, intent: Optional[str] = None,
           handled: str = "assistant", segment: Optional[str] = None, ts: Optional[float] = None,
           db_url: Optional[str] = None) -> Dict[str, Any]:
    """Store the conversation's rating; a later answer in the same conversation replaces the earlier one."""
    if parse_score(score) is None:
        raise ValueError(f"a satisfaction score is 1 to 5, not {score!r}")
    if handled not in ("assistant", "person"):
        raise ValueError(f"handled_by is assistant or person, not {handled!r}")
    row = {"conversation_id": conversation_id, "customer_id": customer_id, "score": parse_score(score),
           "intent": intent, "handled_by": handled, "segment": segment, "ts": time.time() if ts is None else ts}
    with _engine(db_url).begin() as conn:
        conn.execute(db.satisfaction.delete().where(db.satisfaction.c.conversation_id == conversation_id))
        conn.execute(db.satisfaction.insert().values(**row))
    return row


# ------------------------------------------------------------ the figures


def csat(scores: Iterable[int]) -> Dict[str, Any]:
    """count, satisfied (4-5), csat (their share), mean; csat and mean are None without answers."""
    scores = [int(s) for s in scores]
    satisfied = sum(1 for s in scores if s in SATISFIED)
    return {
        "count": len(scores),
        "satisfied": satisfied,
        "csat": satisfied / len(scores) if scores else None,
        "mean": sum(scores) / len(scores) if scores else None,
        "scores": {str(n): scores.count(n) for n in SCORES},
    }


def _by(rows: Sequence[Dict[str, Any]], key: str) -> List[Dict[str, Any]]:
    groups: Dict[str, List[int]] = defaultdict(list)
    for r in rows:
        groups[r.get(key) or "unknown"].append(r["score"])
    return sorted(({key: name, **csat(scores)} for name, scores in groups.items()), key=lambda g: (-g["count"], g[key]))


def summary_of(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """CSAT overall, by intent, by segment and by handled-by, from stored rows."""
    return {
        "overall": csat(r["score"] for r in rows),
        "by_intent": _by(rows, "intent"),
        "by_segment": _by(rows, "segment"),
        "by_handled_by": _by(rows, "handled_by"),
    }


def summary(engine, since: float, until: float) -> Dict[str, Any]:
    """`summary_of` the ratings given in since <= ts < until."""
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(
            sa.select(db.satisfaction).where(db.satisfaction.c.ts >= since).where(db.satisfaction.c.ts < until)
        ).mappings()]
    return summary_of(rows)


def table_lines(figures: Dict[str, Any]) -> List[str]:
    """The CSAT table as text lines (what `python -m bot.insight.analytics` prints)."""
    def fmt(g: Dict[str, Any]) -> str:
        if not g["count"]:
            return "no answers"
        return f"CSAT {g['csat']:.1%}  mean {g['mean']:.2f}  n={g['count']}"

    lines = [f"satisfaction         {fmt(figures['overall'])}"]
    for title, key, field in (("by intent", "by_intent", "intent"), ("by segment", "by_segment", "segment"),
                              ("by handled by", "by_handled_by", "handled_by")):
        for g in figures[key]:
            lines.append(f"  {title:<13} {str(g[field]):<26} {fmt(g)}")
    return lines
