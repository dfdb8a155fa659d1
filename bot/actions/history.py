"""Answers from the history of answered questions, and ratings of any answer.

`action_answer_from_history` runs when the intent classifier is unsure
(``nlu_fallback``), the message is out of scope, or the customer asks a
generic question (``ask_question``). It reads the hits that
`retrieval.AnswerRetriever` attached to the message and gives the best past
answer when its score clears ``retrieval_threshold``, saying where it comes
from, with rating and suggestion buttons; otherwise it asks the customer to
rephrase and offers a person. When an experiment runs on the ``answers``
surface (bot/experiments.yml), the customer's arm sets the threshold and
whether the hits re-ranked by ratings or those before (``rerank: false``)
are used, and each such decision is logged as an exposure.

`action_rate_answer` stores a thumbs up or down sent by a rating button
(``/rate_answer{"answer_id": "...", "rating": "up"|"down"}``) together with
the question the customer had asked. A rating is never lost: when the
database cannot be reached it is kept in a local file and stored with the
next rating that gets through, unless the customer asked to be erased
since (`bot.privacy`).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Text, Tuple

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.answers import rating_buttons
from bot.actions.identity import customer_id_of
from bot.actions.suggestions import suggestion_buttons
from bot.insight.experiments import apply_experiment
from core.review import try_enqueue
from core.settings import PROJECT_ROOT, get_settings
from core.files import write_text_atomically
from core.payloads import is_payload

logger = logging.getLogger(__name__)

# Ratings that could not be stored wait here (one JSON object a line) for the next try.
UNSAVED_RATINGS = PROJECT_ROOT / "var" / "unsaved_ratings.jsonl"
HUMAN_BUTTON = {"title": "Talk to a person", "payload": "/request_human"}
_spool_lock = threading.Lock()


def _suggestion_buttons(tracker: Tracker, topic: str) -> List[Dict[str, str]]:
    try:
        return suggestion_buttons(tracker, topic=topic)
    except Exception:  # the answer matters more than the suggestions
        logger.exception("suggestions for topic %r failed; answering without them", topic)
        return []


def best_history_hit(parse_data: Dict[str, Any], threshold: float, rerank: bool = True) -> Optional[Dict[str, Any]]:
    """The best retrieved hit of a parsed message when its score clears `threshold`, else None.

    `rerank` False takes the hits in their order before customers' ratings
    re-ranked them (``raw_hits``, scored without the ratings).
    """
    retrieval = (parse_data or {}).get("retrieval") or {}
    hits = retrieval.get("hits" if rerank else "raw_hits") or []
    if hits and float(hits[0].get("score", 0.0)) >= threshold:
        return hits[0]
    return None


def answer_strategy(tracker: Tracker) -> Tuple[float, bool]:
    """(threshold, rerank) for this customer now: their arm's when an answers experiment runs (logged), else the settings'."""
    threshold = get_settings().retrieval_threshold
    arm = apply_experiment("answers", customer_id_of(tracker), tracker.sender_id)
    if arm is None:
        return threshold, True
    return float(arm.params.get("threshold", threshold)), bool(arm.params.get("rerank", True))


class ActionAnswerFromHistory(Action):
    """Answers with the closest past answer, or asks to rephrase and offers a person."""

    def name(self) -> Text:
        return "action_answer_from_history"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        from retrieval import history_answer_id

        latest = tracker.latest_message or {}
        hit = best_history_hit(latest, *answer_strategy(tracker))
        if hit is not None:
            topic = (hit.get("tags") or ["history"])[0]
            buttons = rating_buttons(history_answer_id(hit["id"])) + _suggestion_buttons(tracker, topic)
            dispatcher.utter_message(response="utter_history_answer", answer=hit["answer"], buttons=buttons)
            return []
        intent = (latest.get("intent") or {}).get("name")
        # Unanswered: keep it for a reviewer (redacted), whatever the database does.
        try_enqueue(tracker.sender_id, latest.get("text") or "", "fallback", intent, (latest.get("intent") or {}).get("confidence"))
        if intent == "out_of_scope":
            dispatcher.utter_message(response="utter_out_of_scope")
        else:
            dispatcher.utter_message(response="utter_please_rephrase")
            dispatcher.utter_message(response="utter_offer_human", buttons=[HUMAN_BUTTON])
        return []


def previous_user_text(tracker: Tracker) -> str:
    """What the customer last typed before the latest message (button payloads skipped)."""
    seen_latest = False
    for event in reversed(tracker.events):
        if event.get("event") != "user":
            continue
        if not seen_latest:
            seen_latest = True  # the rating payload itself
            continue
        text = (event.get("text") or "").strip()
        if text and not is_payload(text):
            return text
    return ""


def _entity(tracker: Tracker, name: str) -> Optional[str]:
    for entity in (tracker.latest_message or {}).get("entities") or []:
        if entity.get("entity") == name and entity.get("value") not in (None, ""):
            return str(entity["value"])
    return None


def _last_rated_answer(tracker: Tracker) -> Optional[str]:
    """The answer id of the latest bot message that carried rating buttons."""
    for event in reversed(tracker.events):
        if event.get("event") != "bot":
            continue
        for button in (event.get("data") or {}).get("buttons") or []:
            payload = button.get("payload") or ""
            if payload.startswith("/rate_answer"):
                try:
                    return json.loads(payload[len("/rate_answer"):])["answer_id"]
                except (ValueError, KeyError, TypeError):
                    continue
    return None


def _erased_since(rating: Dict[str, Any], since: float, database_url: Optional[str]) -> bool:
    """Whether the customer of a spooled rating asked to be erased after it was spooled (it must not come back)."""
    from bot.privacy.requests import erased_since
    from core import db

    ids = [str(i) for i in (rating.get("customer_id"), rating.get("conversation_id")) if i]
    return bool(ids) and erased_since(db.connect(database_url), ids, since)


def store_rating(rating: Dict[str, Any], database_url: Optional[str] = None, spool: Optional[Path] = None) -> bool:
    """Store `rating` (answer_id, rating, query, customer_id, conversation_id) and any kept earlier.

    Returns True when everything reached the database; otherwise the ratings
    not stored are kept in `spool` (and False is returned), never dropped.
    """
    from retrieval import record_rating

    spool = Path(spool or UNSAVED_RATINGS)
    with _spool_lock:
        pending = []
        if spool.exists():
            for line in spool.read_text(encoding="utf-8").splitlines():
                try:
                    pending.append(json.loads(line))
                except ValueError:
                    aside = spool.with_suffix(".unreadable")
                    with aside.open("a", encoding="utf-8") as fh:
                        fh.write(line + "\n")
                    logger.error("unreadable line in %s moved to %s: %r", spool, aside, line)
        pending.append(rating)
        unsaved = []
        for item in pending:
            spooled_at = item.pop("spooled_at", None)
            try:
                if spooled_at is not None and _erased_since(item, spooled_at, database_url):
                    logger.info("a spooled rating of a customer erased since was dropped")
                    continue
                record_rating(database_url=database_url, **item)
            except ValueError as exc:  # a malformed rating can never be stored; say so loudly
                logger.error("rating %r cannot be stored: %s", item, exc)
            except Exception as exc:  # noqa: BLE001 - the database is down: keep it for later
                logger.error("rating could not be stored (%s); kept in %s", exc, spool)
                unsaved.append({**item, "spooled_at": spooled_at if spooled_at is not None else time.time()})
        if unsaved:
            spool.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomically(spool, "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in unsaved))
        elif spool.exists():
            spool.unlink()
        return not unsaved


class ActionRateAnswer(Action):
    """Stores a thumbs up or down on an answer and thanks the customer."""

    def name(self) -> Text:
        return "action_rate_answer"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        answer_id = _entity(tracker, "answer_id") or _last_rated_answer(tracker)
        rating = (_entity(tracker, "rating") or "").lower()
        if answer_id is None:
            dispatcher.utter_message(response="utter_rating_nothing_to_rate")
            return []
        if rating not in ("up", "down"):
            # Typed "I'd like to rate that answer": offer the buttons for the last answer.
            dispatcher.utter_message(response="utter_ask_rating", buttons=rating_buttons(answer_id))
            return []
        store_rating(
            {
                "answer_id": answer_id,
                "rating": rating,
                "query": previous_user_text(tracker),
                "customer_id": customer_id_of(tracker),
                "conversation_id": tracker.sender_id,
            }
        )
        if rating == "down":
            try_enqueue(tracker.sender_id, previous_user_text(tracker), "thumbs_down", answer_id)
        if rating == "up":
            dispatcher.utter_message(response="utter_rating_thanks_up")
        else:
            dispatcher.utter_message(response="utter_rating_thanks_down", buttons=[HUMAN_BUTTON])
        return []
