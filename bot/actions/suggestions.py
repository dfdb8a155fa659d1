"""Suggestions that ride along with the assistant's answers, and the actions around them.

`suggestion_buttons(tracker, topic)` is what the answer actions call: up to
``max_suggestions`` buttons (settings) for items the recommender finds
relevant to this customer in this conversation, each titled with the item
and why it is suggested, payload ``/select_suggestion{"item_id": "..."}``.
It returns no buttons when suggestions would be out of place: a fallback, a
complaint, a request for a person, a lost, stolen or frozen card (in the
last few turns too), an answer about a bereavement, a fraud, a complaint or
closing the account, an active form, a conversation handed to a person, a
customer who asked for no suggestions, or nothing relevant enough
(``suggestion_threshold``). When an experiment runs on the ``suggestions``
surface (bot/experiments.yml), the customer's arm decides the ranking
strategy (``off``: no buttons) and the exposure is logged
(`bot.insight.experiments.apply_experiment`); otherwise the blend ranks.

Actions:

- ``action_select_suggestion``: a suggestion was clicked (or "tell me more
  about that" typed): stores the click, tells the recommender at once (so
  the next suggestions change without retraining), and gives the details.
- ``action_no_suggestions``: the customer wants no suggestions; honoured at
  once (slot) and remembered (``customers.suggestions_opt_out``).
- ``action_forget_me``: after the customer confirmed, records a durable
  erasure request for the verified customer (`bot.privacy.requests`) and says
  so; the privacy worker (`bot.privacy.worker`) erases every store and then
  tells the customer again in this conversation.

The recommender is loaded once per process from ``recommender_dir``; when
that folder is missing, suggestions come from the catalogue alone
(`Recommender.from_catalogue`: items whose tags fit the conversation, no
popularity), with a warning in the log. Customers' profiles are
never taken from that folder: each is read from the database the first time
the customer is seen (so an erased profile cannot come back from an artifact
or an image), and every process drops the profiles of erased customers.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, Dict, Iterable, List, Optional, Text

import sqlalchemy as sa
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.handoff.queue import HandoffQueue
from bot.actions.identity import customer_id_of
from bot.insight.experiments import apply_experiment
from bot.privacy.requests import record_request
from core import db, metrics
from core.payloads import parse_payload
from core.settings import PROJECT_ROOT, get_settings
from recommender import (
    ModelFolderError,
    Recommender,
    UnknownItemError,
    history_source,
    load_items,
    record_interaction,
    set_suggestions_opt_out,
    suggestions_opted_out,
)

logger = logging.getLogger(__name__)

CATALOGUE = PROJECT_ROOT / "bot" / "catalogue" / "items.jsonl"
SELECT_SUGGESTION = "select_suggestion"
OPT_OUT_SLOT = "suggestions_opt_out"
# No suggestion during or shortly after these: the customer has other things on their mind.
SENSITIVE_INTENTS = frozenset({"nlu_fallback", "complaint", "request_human", "lost_or_stolen_card", "freeze_card"})
# Topics of retrieved answers where selling anything would be tactless: a bereavement,
# a fraud, a complaint, closing the account.
SENSITIVE_TOPICS = frozenset({"bereavement-poa", "fraud", "complaints-misc", "closing"})
# How many of the customer's latest messages are checked for a sensitive intent.
RECENT_TURNS = 3
# How a topic is named in "Because you asked about ..."; others are spelt out from their tag.
TOPIC_LABELS = {
    "exchange_rate": "paying abroad", "card_payment_fee": "card payment fees", "cash_withdrawal_fee": "cash withdrawals",
    "transfer_fees": "transfer fees", "top_up_methods": "adding money", "top_up_failed": "adding money",
    "failed_transfer": "a transfer", "pending_payment": "a pending payment", "refund_not_showing": "a refund",
    "card_declined": "a declined card", "card_arrival": "your new card", "activate_card": "your new card",
    "change_pin": "your PIN", "virtual_card": "virtual cards", "mobile_wallet": "paying by phone",
    "contactless_not_working": "contactless", "direct_debit": "Direct Debits", "statement_request": "statements",
    "account_details": "your account details", "verify_identity": "checking your identity",
    "change_personal_details": "your personal details", "atm_kept_card": "a kept card",
    "cards-abroad": "using your card abroad", "joint-accounts": "joint accounts", "young-people": "accounts for young people",
    "lending": "borrowing", "overdrafts": "overdrafts", "international": "international payments",
}

_recommender = None
_recommender_lock = threading.Lock()


# ------------------------------------------------------------------ the recommender of this process


def get_recommender():
    """The recommender of this process, loaded on first use (from the catalogue if no model was trained)."""
    global _recommender
    if _recommender is None:
        with _recommender_lock:
            if _recommender is None:
                _recommender = _load_recommender()
    return _recommender


def loaded_recommender():
    """The recommender of this process if it was loaded, else None (nothing is loaded)."""
    return _recommender


def use_recommender(recommender) -> None:
    """Make `recommender` the one this process suggests with (None: load it again on next use)."""
    global _recommender
    with _recommender_lock:
        _recommender = recommender


def warm_up(topics: Iterable[str] = ()) -> int:
    """Load the recommender and its sentence encoder now, and embed `topics`; the number of topics embedded.

    The action server calls this before it answers (`bot.action_server`), so
    that the first customer whose topic no catalogue item carries does not
    wait seconds for the encoder to load on the request path. A recommender
    or encoder that cannot load is logged and left to the first use, which
    answers without suggestions as before.
    """
    try:
        model = get_recommender()
    except Exception:
        logger.exception("the recommender could not be loaded ahead of the first request")
        return 0
    content = getattr(model, "content", None)
    if content is None or content.item_vectors.size == 0:
        return 0  # nothing is compared by text: the encoder is never needed
    return sum(content.term_vector(topic) is not None for topic in topics)


def _load_recommender():
    folder = get_settings().recommender_dir
    engine = None
    try:
        engine = db.connect()
    except db.DatabaseUnavailableError:
        logger.exception("no database for the recommender's customer histories")
    try:
        model = Recommender.load(folder)
    except ModelFolderError as exc:
        logger.warning("%s; until then suggestions come from the catalogue only", exc)
        model = Recommender.from_catalogue(load_items(CATALOGUE), content_weight=0.0)
    # Profiles come from the database only: those saved with the model are dropped.
    model.use_history(history_source(engine) if engine is not None else None, drop_saved=True)
    return model


# ------------------------------------------------------------------ when, and which


def _intent(parse_data: Optional[Dict[str, Any]]) -> str:
    return ((parse_data or {}).get("intent") or {}).get("name") or ""


def recent_intents(tracker: Tracker, turns: int = RECENT_TURNS) -> List[str]:
    """Intents of the customer's latest `turns` messages, newest first."""
    found = []
    for event in reversed(tracker.events or []):
        if event.get("event") == "user":
            found.append(_intent(event.get("parse_data")))
            if len(found) == turns:
                break
    latest = _intent(tracker.latest_message)
    if latest and latest not in found:
        found.insert(0, latest)
    return found


def suggestions_allowed(tracker: Tracker, topic: Optional[str]) -> bool:
    """Whether suggestions fit this moment of the conversation (see the module docstring)."""
    if topic in SENSITIVE_INTENTS or topic in SENSITIVE_TOPICS or SENSITIVE_INTENTS.intersection(recent_intents(tracker)):
        return False
    if SENSITIVE_TOPICS.intersection(suggestion_context(tracker, topic)["topics"]):
        return False  # an answer from history whose other tags are sensitive
    if (tracker.active_loop or {}).get("name"):
        return False
    if tracker.get_slot(OPT_OUT_SLOT):
        return False
    if HandoffQueue().current(tracker.sender_id) is not None:  # waiting for or talking to a person
        return False
    return True


def suggestion_context(tracker: Tracker, topic: Optional[str]) -> Dict[str, Any]:
    """What the conversation is about now: the topic, the tags of the answer given, a label for the reason.

    When the answer came from history (the topic is a tag of the best
    retrieved answer), all that answer's tags count; after a confident
    intent the retrieved answers are not what was said, so they are left out.
    """
    topics: List[str] = []
    retrieval = (tracker.latest_message or {}).get("retrieval") or {}
    hits = retrieval.get("hits") or []
    if hits and topic and topic in (hits[0].get("tags") or []):
        topics = [str(t) for t in hits[0]["tags"]]
    label = TOPIC_LABELS.get(topic or "") or next((TOPIC_LABELS[t] for t in topics if t in TOPIC_LABELS), None)
    return {"intent": topic or None, "topics": topics, "label": label}


def suggestion_button(suggestion) -> Dict[str, str]:
    """The button for one `recommender.Suggestion`: item title and reason, payload selecting the item."""
    payload = "/" + SELECT_SUGGESTION + json.dumps({"item_id": suggestion.item_id}, separators=(",", ":"), ensure_ascii=False)
    reason = suggestion.reason[:1].lower() + suggestion.reason[1:]
    return {"title": f"{suggestion.title} — {reason}", "payload": payload}


def suggestion_buttons(tracker: Any, topic: str) -> List[Dict[str, str]]:
    """Buttons suggesting items for this customer after an answer on `topic`; [] where suggestions do not belong.

    The topic is also remembered as something the customer asked about.
    Never raises: a failure here costs the suggestions, not the answer.
    """
    try:
        if not suggestions_allowed(tracker, topic):
            return []
        engine = db.connect()
        customer = customer_id_of(tracker)
        if suggestions_opted_out(engine, customer):
            return []
        settings = get_settings()
        model = get_recommender()
        arm = apply_experiment("suggestions", customer, tracker.sender_id)  # None: no experiment; logged when one runs
        strategy = arm.params.get("strategy", "blend") if arm is not None else "blend"
        suggestions = []
        if strategy != "off":
            with metrics.RECOMMENDATION_SECONDS.time():
                suggestions = model.recommend(customer, k=settings.max_suggestions, context=suggestion_context(tracker, topic),
                                              strategy=strategy)
        if topic:  # remembered after ranking, so the question asked now is not counted twice
            model.record(customer, None, "topic", topic=topic)
            record_interaction(engine, customer, None, "topic", topic=topic, conversation_id=tracker.sender_id)
        buttons = [suggestion_button(s) for s in suggestions if s.score >= settings.suggestion_threshold][: settings.max_suggestions]
        metrics.SUGGESTIONS_SHOWN.inc(len(buttons))
        return buttons
    except Exception:  # the answer matters more than the suggestions
        metrics.ERRORS.labels("recommender").inc()
        logger.exception("no suggestions for topic %r", topic)
        return []


# ------------------------------------------------------------------ actions


def _entity(tracker: Tracker, name: str) -> Optional[str]:
    for entity in (tracker.latest_message or {}).get("entities") or []:
        if entity.get("entity") == name and entity.get("value") not in (None, ""):
            return str(entity["value"])
    return None


def last_suggested_item(tracker: Tracker) -> Optional[str]:
    """The first item of the latest bot message that carried suggestions (for a typed "tell me more")."""
    for event in reversed(tracker.events or []):
        if event.get("event") != "bot":
            continue
        for button in (event.get("data") or {}).get("buttons") or []:
            parsed = parse_payload(button.get("payload"))
            if parsed and parsed[0] == SELECT_SUGGESTION and parsed[1].get("item_id") not in (None, ""):
                return str(parsed[1]["item_id"])
    return None


class ActionSelectSuggestion(Action):
    """Stores a click on a suggestion, updates the recommender at once and shows the item."""

    def name(self) -> Text:
        return "action_select_suggestion"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        item_id = _entity(tracker, "item_id") or last_suggested_item(tracker)
        model = get_recommender()
        try:
            item = model.item(item_id) if item_id else None
        except UnknownItemError:
            item = None
        if item is None:
            dispatcher.utter_message(response="utter_suggestion_unknown")
            return []
        customer = customer_id_of(tracker)
        metrics.SUGGESTION_CLICKS.inc()
        # The recommender first: it reads a customer's stored history on first sight, which must
        # not already hold this click (it would count twice).
        model.record(customer, item_id, "click")
        try:
            record_interaction(db.connect(), customer, item_id, "click", weight=model.config.kind_weights.get("click", 1.0),
                                     conversation_id=tracker.sender_id)
        except (db.DatabaseUnavailableError, sa.exc.SQLAlchemyError):
            logger.exception("could not store the click of %r on %r", customer, item_id)
        buttons = suggestion_buttons(tracker, topic="")
        dispatcher.utter_message(
            response="utter_suggestion_details", title=item["title"], description=item["description"] or "",
            url=item.get("url") or "the Northwind app", buttons=buttons,
        )
        return []


class ActionNoSuggestions(Action):
    """Stops suggestions for this customer now and for later conversations."""

    def name(self) -> Text:
        return "action_no_suggestions"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        try:
            set_suggestions_opt_out(db.connect(), customer_id_of(tracker), True)
            dispatcher.utter_message(response="utter_suggestions_off")
        except (db.DatabaseUnavailableError, sa.exc.SQLAlchemyError):
            logger.exception("could not store the opt-out of %r", customer_id_of(tracker))
            dispatcher.utter_message(response="utter_suggestions_off_not_saved")
        return [SlotSet(OPT_OUT_SLOT, True)]


class ActionForgetMe(Action):
    """Records the confirmed wish to be erased; the privacy worker carries it out and tells the customer when done."""

    def name(self) -> Text:
        return "action_forget_me"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        customer = customer_id_of(tracker)
        try:
            request_id, new = record_request(db.connect(), customer, via=tracker.sender_id)
        except (db.DatabaseUnavailableError, sa.exc.SQLAlchemyError):
            logger.exception("could not record the erasure request of conversation %s", tracker.sender_id)
            dispatcher.utter_message(response="utter_forget_me_failed")
            return []
        logger.info("erasure request %s %s", request_id, "recorded" if new else "already open")
        dispatcher.utter_message(response="utter_forget_me_recorded")
        return []
