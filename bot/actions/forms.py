"""The payment dispute and transfer forms (bot/domain/forms.yml), and what every form here shares.

Slots come from the NLU's entities (amount, date, card_last_four, account_type
with the roles from and to, card_type, merchant), or from the customer's whole
message when the form asked for that one slot; the validation actions read
either into a clean value (`bot.actions.slot_values`) or explain what is wrong
and let the form ask again. The demo has no card or payments system behind it:
a completed form is recorded in the conversation itself (the tracker store
keeps its slots and the reply), and the reply says plainly what happens next,
as the card freeze does (`bot.actions.dialogue.ActionFreezeCard`).
"""
from __future__ import annotations

import logging
from abc import abstractmethod
from datetime import date
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Optional, Set, Text, Tuple

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT

from bot.actions.slot_values import (
    Money,
    looks_like_full_card_number,
    merchant_name,
    parse_account_type,
    parse_amount,
    parse_card_last_four,
    parse_date,
)

logger = logging.getLogger(__name__)

# Stated in the forms' questions and refusals (bot/domain/forms.yml).
DISPUTE_LIMIT = Decimal("10000")  # in the currency of the payment
TRANSFER_LIMIT = Decimal("25000")  # pounds, per transfer
CARD_TYPES = ("debit", "credit", "virtual")
# Answers in a row a form could not use before it stops (`FormFromEntities`), and the slot counting them.
GIVE_UP_AFTER = 3
FAILED_ANSWERS_SLOT = "form_failed_answers"


class FormFromEntities(FormValidationAction):
    """A form whose slots can be filled by entities, the message that starts it included.

    Slots outlive a form that never finished (a handoff, a session that
    expired, a "no" half-way) and are carried into new sessions, so when the
    form starts a filled slot is kept only if the customer said its value in
    the message that started it; anything else is forgotten and asked again.
    `extra_slots` are slots outside `required_slots` that the form fills
    without asking, forgotten the same way.

    A form lets go of a customer who has moved on: after `GIVE_UP_AFTER`
    answers in a row that it could not use (another question typed where it
    asked for the card's digits, say), it says so (``utter_form_given_up``) and
    stops, and its own last action says that nothing was done, as when the
    customer says "no". Before, it asked the same question for as long as the
    customer wrote, answering none of what they asked, and the conversation's
    tracker grew with every turn of it (a window cannot start inside a form,
    bot/stores.py).
    """

    extra_slots: Tuple[Text, ...] = ()

    @abstractmethod
    def name(self) -> Text:
        """validate_<form name>; abstract, so the action server does not register this base class."""

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        said = len(dispatcher.messages)
        starting = self.starting(tracker)
        events = await self._validated(dispatcher, tracker, domain, starting)
        return self._counted(events, dispatcher, tracker, domain, starting, said)

    async def _validated(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any], starting: bool
    ) -> List[Dict[Text, Any]]:
        left_over = self.left_over_slots(tracker, domain) if starting else set()
        if not left_over:
            return await super().run(dispatcher, tracker, domain)
        state = tracker.current_state()
        state["slots"] = {**state["slots"], **{slot: None for slot in left_over}}
        state["events"] = [e for e in state["events"] if not (e.get("event") == "slot" and e.get("name") in left_over)]
        forgotten = [SlotSet(slot, None) for slot in sorted(left_over)]
        return forgotten + await super().run(dispatcher, Tracker.from_dict(state), domain)

    def _counted(
        self, events: List[Dict[Text, Any]], dispatcher: CollectingDispatcher, tracker: Tracker,
        domain: Dict[Text, Any], starting: bool, said: int,
    ) -> List[Dict[Text, Any]]:
        """`events`, with the count of unusable answers in a row kept, or the form stopped at `GIVE_UP_AFTER`."""
        failed = int(tracker.get_slot(FAILED_ANSWERS_SLOT) or 0)
        asked = tracker.get_slot(REQUESTED_SLOT)
        slots = set(self.domain_slots(domain)) | set(self.extra_slots)
        set_now = {e.get("name"): e.get("value") for e in events if e.get("event") == "slot"}
        if starting or any(set_now.get(slot) is not None for slot in slots):
            return events + ([SlotSet(FAILED_ANSWERS_SLOT, 0)] if failed else [])  # progress: the count starts again
        if not asked or asked not in set_now or set_now[asked] is not None:
            return events  # not an answer the form refused (an interruption a rule handled, say)
        failed += 1
        if failed < GIVE_UP_AFTER:
            return events + [SlotSet(FAILED_ANSWERS_SLOT, failed)]
        del dispatcher.messages[said:]  # not "that is not four digits" once more
        dispatcher.utter_message(response="utter_form_given_up")
        logger.info("%s: %d unusable answers in a row, %s stops", tracker.sender_id, failed, self.form_name())
        # requested_slot None stops the form (Rasa's FormAction.is_done); its submit rule then runs.
        return events + [SlotSet(FAILED_ANSWERS_SLOT, 0), SlotSet(REQUESTED_SLOT, None)]

    def starting(self, tracker: Tracker) -> bool:
        """Whether this form became the active loop in this turn (Rasa validates what is already filled then)."""
        for event in reversed(tracker.events):
            if event.get("event") == "user":
                return False
            if event.get("event") == "active_loop" and event.get("name") == self.form_name():
                return True
        return False

    def left_over_slots(self, tracker: Tracker, domain: Dict[Text, Any]) -> Set[Text]:
        """This form's filled slots whose values the latest message did not give as entities."""
        slots = list(self.domain_slots(domain)) + list(self.extra_slots)
        return {slot for slot in slots
                if tracker.get_slot(slot) is not None and not said_in_latest_message(slot, tracker, domain)}


def said_in_latest_message(slot: Text, tracker: Tracker, domain: Dict[Text, Any]) -> bool:
    """Whether the latest message has an entity mapped to `slot` (type and role) with the slot's value."""
    value = tracker.get_slot(slot)
    mappings = (domain.get("slots", {}).get(slot) or {}).get("mappings") or []
    wanted = {(m.get("entity"), m.get("role")) for m in mappings if m.get("type") == "from_entity"}
    entities = (tracker.latest_message or {}).get("entities") or []
    said = [e.get("value") for e in entities if (e.get("entity"), e.get("role")) in wanted]
    return value in said or value == said


def checked_card_last_four(
    slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
) -> Optional[str]:
    """Exactly four digits, or None after telling the customer why (a whole card number gets a warning)."""
    typed = (tracker.latest_message or {}).get("text")
    if looks_like_full_card_number(slot_value) or looks_like_full_card_number(typed):
        dispatcher.utter_message(response="utter_full_card_number_warning")
        return None
    last_four = parse_card_last_four(slot_value)
    if last_four is None:
        dispatcher.utter_message(response="utter_card_last_four_invalid")
    return last_four


def checked_amount(slot_value: Any, dispatcher: CollectingDispatcher) -> Optional[Money]:
    """A positive amount in figures, or None after telling the customer why."""
    amount = parse_amount(slot_value)
    if amount is None:
        dispatcher.utter_message(response="utter_amount_invalid")
    elif amount.value <= 0:
        dispatcher.utter_message(response="utter_amount_not_positive")
        return None
    return amount


def checked_yes_or_no(slot: Text, slot_value: Any, dispatcher: CollectingDispatcher) -> Dict[Text, Any]:
    """Keep a yes or a no (affirm / deny, mapped to True / False); anything else is asked again."""
    if isinstance(slot_value, bool):
        return {slot: slot_value}
    dispatcher.utter_message(response="utter_answer_yes_or_no")
    return {slot: None}


def card_words(card_type: Any, last_four: Any) -> str:
    """How the replies name the card: "credit card ending 4821", or "card ending 4821" when the type is not known."""
    kind = str(card_type or "").lower()
    return f"{kind} card ending {last_four}" if kind in CARD_TYPES else f"card ending {last_four}"


def day_words(iso_day: Any) -> str:
    """An ISO date as the replies write it: "3 March 2025" (the text itself if it is not one)."""
    try:
        day = date.fromisoformat(str(iso_day))
    except ValueError:
        return str(iso_day)
    return f"{day.day} {day:%B %Y}"


def clear(slots: Iterable[Text]) -> List[Dict[Text, Any]]:
    """Events emptying `slots`, so the next request starts afresh."""
    return [SlotSet(slot, None) for slot in slots]


# ------------------------------------------------------------------ payment dispute

DISPUTE_SLOTS = ("merchant", "dispute_amount", "payment_date", "card_last_four", "card_type", "dispute_confirmed")


class ValidateDisputePaymentForm(FormFromEntities):
    """Checks the shop, the amount, the day and the card of a disputed payment, and the customer's yes or no."""

    extra_slots = ("card_type",)

    def name(self) -> Text:
        return "validate_dispute_payment_form"

    def validate_merchant(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> Dict[Text, Any]:
        """A shop or company name; the rest of a typed answer ("£45 at Tesco") is left to its own slots."""
        name = merchant_name(without_other_entities(slot_value, tracker))
        if name is None:
            dispatcher.utter_message(response="utter_merchant_invalid")
        return {"merchant": name}

    def validate_dispute_amount(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> Dict[Text, Any]:
        """A positive amount up to DISPUTE_LIMIT in its currency, written back as "£45.00"."""
        amount = checked_amount(slot_value, dispatcher)
        if amount is not None and amount.value > DISPUTE_LIMIT:
            dispatcher.utter_message(response="utter_dispute_amount_too_large")
            amount = None
        return {"dispute_amount": None if amount is None else str(amount)}

    def validate_payment_date(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> Dict[Text, Any]:
        """One day, not in the future, written back in ISO form ("2025-03-03")."""
        day = parse_date(slot_value)
        if day is None:
            dispatcher.utter_message(response="utter_payment_date_invalid")
        elif day > date.today():
            dispatcher.utter_message(response="utter_payment_date_in_future")
            day = None
        return {"payment_date": None if day is None else day.isoformat()}

    def validate_card_last_four(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> Dict[Text, Any]:
        """Exactly four digits; a whole card number is refused with a warning."""
        return {"card_last_four": checked_card_last_four(slot_value, dispatcher, tracker)}

    def validate_dispute_confirmed(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> Dict[Text, Any]:
        return checked_yes_or_no("dispute_confirmed", slot_value, dispatcher)


def without_other_entities(text: Any, tracker: Tracker) -> str:
    """`text` less the spans of other entities when it is the whole latest message (a typed answer)."""
    latest = tracker.latest_message or {}
    text = str(text or "")
    if text != latest.get("text"):
        return text
    spans = sorted((e["start"], e["end"]) for e in latest.get("entities") or []
                   if e.get("entity") != "merchant" and isinstance(e.get("start"), int)
                   and isinstance(e.get("end"), int))
    for start, end in reversed(spans):
        text = text[:start] + " " + text[end:]
    return text


class ActionAskDisputeConfirmed(Action):
    """Asks the customer to confirm the dispute, naming the payment as it will be recorded."""

    def name(self) -> Text:
        return "action_ask_dispute_confirmed"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        dispatcher.utter_message(response="utter_confirm_dispute", **_dispute_words(tracker))
        return []


def _dispute_words(tracker: Tracker) -> Dict[Text, str]:
    return {
        "amount": str(tracker.get_slot("dispute_amount")),
        "merchant": str(tracker.get_slot("merchant")),
        "date": day_words(tracker.get_slot("payment_date")),
        "card": card_words(tracker.get_slot("card_type"), tracker.get_slot("card_last_four")),
    }


class ActionDisputePayment(Action):
    """Completes the dispute form: records the dispute or says it was not sent, and clears its slots."""

    def name(self) -> Text:
        return "action_dispute_payment"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        confirmed = tracker.get_slot("dispute_confirmed")
        if confirmed is True:
            dispatcher.utter_message(response="utter_dispute_recorded", **_dispute_words(tracker))
        elif confirmed is False:
            dispatcher.utter_message(response="utter_dispute_not_sent")
        else:  # the customer stopped before the end (rule "customer stops the dispute form")
            dispatcher.utter_message(response="utter_dispute_cancelled")
        events = clear(DISPUTE_SLOTS)
        if confirmed is True:  # resolved: the end-of-conversation rating (bot/actions/satisfaction.py)
            from bot.actions.satisfaction import offer

            events += offer(dispatcher, tracker)
        return events


# ------------------------------------------------------------------ transfer between own accounts

TRANSFER_SLOTS = ("transfer_amount", "from_account", "to_account", "transfer_confirmed")


class ValidateTransferForm(FormFromEntities):
    """Checks the amount and the two accounts of a transfer between the customer's own accounts, and the yes or no."""

    def name(self) -> Text:
        return "validate_transfer_form"

    def validate_transfer_amount(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> Dict[Text, Any]:
        """A positive amount in pounds up to TRANSFER_LIMIT, written back as "£250.00"."""
        amount = checked_amount(slot_value, dispatcher)
        if amount is not None and amount.currency != "GBP":
            dispatcher.utter_message(response="utter_transfer_amount_not_pounds")
            amount = None
        elif amount is not None and amount.value > TRANSFER_LIMIT:
            dispatcher.utter_message(response="utter_transfer_amount_too_large")
            amount = None
        return {"transfer_amount": None if amount is None else str(amount)}

    def validate_from_account(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> Dict[Text, Any]:
        """One of the customer's account types, other than the account the money goes to."""
        return {"from_account": _checked_account(slot_value, tracker.get_slot("to_account"), dispatcher)}

    def validate_to_account(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> Dict[Text, Any]:
        """One of the customer's account types, other than the account the money comes from."""
        return {"to_account": _checked_account(slot_value, tracker.get_slot("from_account"), dispatcher)}

    def validate_transfer_confirmed(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> Dict[Text, Any]:
        return checked_yes_or_no("transfer_confirmed", slot_value, dispatcher)


def _checked_account(slot_value: Any, other_end: Any, dispatcher: CollectingDispatcher) -> Optional[str]:
    """The account type named, or None after telling the customer why (unknown, or the other end's account)."""
    account = parse_account_type(slot_value)
    if account is None:
        dispatcher.utter_message(response="utter_account_type_invalid")
    elif account == parse_account_type(other_end):
        dispatcher.utter_message(response="utter_same_account")
        return None
    return account


class ActionTransferMoney(Action):
    """Completes the transfer form: confirms the move or says none was made, and clears its slots."""

    def name(self) -> Text:
        return "action_transfer_money"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        confirmed = tracker.get_slot("transfer_confirmed")
        if confirmed is True:
            dispatcher.utter_message(
                response="utter_transfer_done",
                amount=tracker.get_slot("transfer_amount"),
                from_account=tracker.get_slot("from_account"),
                to_account=tracker.get_slot("to_account"),
            )
        elif confirmed is False:
            dispatcher.utter_message(response="utter_transfer_not_made")
        else:  # the customer stopped before the end (rule "customer stops the transfer form")
            dispatcher.utter_message(response="utter_transfer_cancelled")
        events = clear(TRANSFER_SLOTS)
        if confirmed is True:
            from bot.actions.satisfaction import offer

            events += offer(dispatcher, tracker)
        return events
