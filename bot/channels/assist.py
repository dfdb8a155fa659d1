"""Agent assist: reply drafts for a person at the inbox, and what they finally sent.

`build_drafts` reads the parse data the Rasa server already stored with the
customer's messages: the answer index's hits (``retrieval.hits``, attached by
`retrieval.AnswerRetriever`) and the intent ranking, whose intents answer with
the domain response ``utter_<intent>``. It drafts for the customer's latest
typed message that yields any draft (the last three are tried, newest first)
and returns the best three by score, each with the question it came from:
the past question for an index hit, the customer's message for a domain
response (scored by the intent's confidence). Identical texts count once.

`log_reply` is the one writer of ``assist_replies`` (core/db.py, v8): the
conversation, the agent's username, the draft the agent started from (source,
id, text; all None when they wrote from scratch), the text sent (redacted with
`core.redaction.redact_agent_reply`) and its similarity to that draft and to
the closest draft offered (difflib ratio, 0..1). When drafts were offered and
the sent text is less than `REWRITE_SIMILARITY` like every one of them, the
customer's message is kept in the review queue with reason ``agent_rewrite``,
so a reviewer can give the index the answer the person wrote.
"""
from __future__ import annotations

import difflib
import logging
import time
from typing import Any, Dict, Iterable, List, Optional

import sqlalchemy as sa
from rasa.shared.core.events import UserUttered
from sqlalchemy.engine import Engine

from core import db, review
from core.payloads import is_payload
from core.redaction import redact_agent_reply

logger = logging.getLogger(__name__)

INDEX, DOMAIN = "answer_index", "domain"
SOURCES = (INDEX, DOMAIN)
TOP = 3
REWRITE_SIMILARITY = 0.5  # below this against every draft offered, the reply goes to the review queue


def _typed(events: Iterable[Any]) -> List[UserUttered]:
    return [e for e in events if isinstance(e, UserUttered) and e.text and not is_payload(e.text)]


def _response_text(responses: Dict[str, Any], name: str) -> Optional[str]:
    for variant in responses.get(name) or []:
        text = (variant or {}).get("text") if isinstance(variant, dict) else None
        if text and not variant.get("channel"):
            return str(text)
    return None


def drafts_for(parse: Dict[str, Any], text: str, responses: Dict[str, Any], top: int = TOP) -> List[Dict[str, Any]]:
    """The best `top` drafts for one parsed customer message (see the module's docstring)."""
    candidates: List[Dict[str, Any]] = []
    for hit in (parse.get("retrieval") or {}).get("hits") or []:
        if hit.get("answer"):
            candidates.append({"source": INDEX, "id": str(hit.get("id") or ""), "text": str(hit["answer"]),
                               "question": hit.get("question"), "score": round(float(hit.get("score") or 0.0), 3)})
    ranking = parse.get("intent_ranking") or ([parse["intent"]] if parse.get("intent") else [])
    for intent in ranking:
        name = (intent or {}).get("name")
        answer = _response_text(responses, f"utter_{name}") if name else None
        if answer:
            candidates.append({"source": DOMAIN, "id": f"utter_{name}", "text": answer, "question": text,
                               "score": round(float(intent.get("confidence") or 0.0), 3)})
    candidates.sort(key=lambda d: d["score"], reverse=True)
    chosen: List[Dict[str, Any]] = []
    for draft in candidates:
        if all(draft["text"] != c["text"] for c in chosen):
            chosen.append(draft)
        if len(chosen) == top:
            break
    return chosen


def build_drafts(events: Iterable[Any], responses: Dict[str, Any], top: int = TOP, last: int = 3) -> Dict[str, Any]:
    """{"message": the customer text drafted for (None: none yet), "sentiment", "drafts": [...]}.

    "sentiment" is the message's own (``sentiment`` in its parse data or its metadata, e.g.
    {"label": "negative", "confidence": 0.8}) when something stored one; None otherwise.
    """
    for event in _typed(events)[-last:][::-1]:
        parse = event.parse_data or {}
        drafts = drafts_for(parse, event.text, responses, top)
        if drafts:
            sentiment = parse.get("sentiment") or (getattr(event, "metadata", None) or {}).get("sentiment")
            return {"message": event.text, "sentiment": sentiment, "drafts": drafts}
    return {"message": None, "sentiment": None, "drafts": []}


def profile_summary(profile: Dict[str, Any]) -> str:
    """One line about the customer from `bot.channels.inbox.customer_profile`."""
    if not profile.get("id"):
        return "No verified customer."
    if not profile.get("known"):
        return f"{profile['id']}: no profile in the database."
    parts = [str(profile["id"])]
    if profile.get("segment"):
        parts.append(f"segment {profile['segment']}")
    if profile.get("age_band"):
        parts.append(f"age {profile['age_band']}")
    ratings = profile.get("ratings") or {}
    parts.append(f"{ratings.get('up', 0)} helpful / {ratings.get('down', 0)} not helpful ratings")
    topics = [r["what"] for r in profile.get("recent") or [] if r.get("what")]
    if topics:
        parts.append("recently: " + ", ".join(dict.fromkeys(topics[:5])))
    if profile.get("synthetic"):
        parts.append("synthetic demo customer")
    return "; ".join(parts) + "."


def similarity(a: Optional[str], b: Optional[str]) -> float:
    """How alike two texts are, 0 (nothing shared) to 1 (the same), ignoring case and spacing."""
    if not a or not b:
        return 0.0
    a, b = " ".join(a.lower().split()), " ".join(b.lower().split())
    return round(difflib.SequenceMatcher(None, a, b, autojunk=False).ratio(), 3)


def log_reply(engine: Engine, conversation_id: str, agent: str, agent_name: str, sent: str,
              offered: Dict[str, Any], chosen: Optional[Dict[str, Any]] = None,
              db_url: Optional[str] = None) -> Dict[str, Any]:
    """Record what the agent sent beside the draft chosen (`chosen`: {source, id} or None); returns the row."""
    drafts = offered.get("drafts") or []
    draft = None
    if chosen:
        draft = next((d for d in drafts if d["source"] == chosen.get("source") and d["id"] == chosen.get("id")), None)
    clean = redact_agent_reply((sent or "").strip(), agent_name)
    best = max((similarity(clean, d["text"]) for d in drafts), default=None)
    row = {
        "conversation_id": conversation_id,
        "agent": agent,
        "draft_source": (chosen or {}).get("source"),
        "draft_id": (chosen or {}).get("id"),
        "draft_text": draft["text"] if draft else None,
        "sent_text": clean,
        "similarity": similarity(clean, draft["text"]) if draft else None,
        "best_similarity": best,
        "review_item": None,
        "ts": time.time(),
    }
    if drafts and best is not None and best < REWRITE_SIMILARITY and offered.get("message"):
        row["review_item"] = review.try_enqueue(
            conversation_id, offered["message"], "agent_rewrite",
            predicted_intent=draft["id"][len("utter_"):] if draft and draft["source"] == DOMAIN else None,
            confidence=best, db_url=db_url)
    with engine.begin() as conn:
        row["id"] = int(conn.execute(db.assist_replies.insert().values(**row)).inserted_primary_key[0])
    return row


def try_log_reply(*args: Any, **kwargs: Any) -> Optional[Dict[str, Any]]:
    """`log_reply` for the inbox: the reply has gone out, so a database problem is logged, never raised."""
    try:
        return log_reply(*args, **kwargs)
    except (sa.exc.SQLAlchemyError, db.DatabaseUnavailableError, OSError) as exc:
        logger.error("could not log the agent's reply in %s: %s", args[1] if len(args) > 1 else "?", exc)
        return None


def logged(engine: Engine, conversation_id: Optional[str] = None, limit: int = 50) -> List[Dict[str, Any]]:
    """The newest logged replies (of one conversation when given)."""
    query = sa.select(db.assist_replies).order_by(db.assist_replies.c.id.desc()).limit(limit)
    if conversation_id:
        query = query.where(db.assist_replies.c.conversation_id == conversation_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
