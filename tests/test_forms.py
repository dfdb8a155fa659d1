"""The forms' slots from entities: the readers of typed values, the validation and final actions, and whole form runs.

The last part drives Rasa's own slot extraction (`action_extract_slots`, the
domain's mappings) and `FormAction` over the real domain in bot/domain/, with
the project's custom actions served in-process by the Rasa SDK's executor
instead of the action server: the NLU's entities are given, so no model is
trained and each conversation takes milliseconds.
"""
from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Dict, List, Optional, Tuple

import pytest
from rasa.core.actions.action import ActionExecutionRejection, ActionExtractSlots, RemoteAction
from rasa.core.actions.forms import FormAction
from rasa.core.channels import CollectingOutputChannel
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig
from rasa_sdk import Tracker
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher

from bot.actions.dialogue import ValidateFreezeCardForm
from bot.actions.forms import (
    ActionDisputePayment,
    ActionTransferMoney,
    ValidateDisputePaymentForm,
    ValidateTransferForm,
    card_words,
    day_words,
)
from bot.actions.slot_values import (
    Money,
    looks_like_full_card_number,
    merchant_name,
    parse_account_type,
    parse_amount,
    parse_date,
)
from core.settings import PROJECT_ROOT, get_settings

WEDNESDAY = date(2025, 5, 14)


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(PROJECT_ROOT / "bot" / "domain"))


@pytest.fixture(scope="module")
def domain_dict(domain) -> Dict[str, Any]:
    """The domain as the action server receives it."""
    return domain.as_dict()


@pytest.fixture(autouse=True)
def database(tmp_path, monkeypatch):
    """A completed form offers the satisfaction rating, which reads the database: a temporary one."""
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", f"sqlite:///{tmp_path / 'assistant.db'}")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# ------------------------------------------------------------------ reading typed values


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("£50", Money(Decimal("50.00"))),
        ("50 pounds", Money(Decimal("50.00"))),
        ("$1,200.50", Money(Decimal("1200.50"), "USD")),
        ("20 euros", Money(Decimal("20.00"), "EUR")),
        ("it was about 45 quid", Money(Decimal("45.00"))),
        ("45.99", Money(Decimal("45.99"))),
        ("50p", Money(Decimal("0.50"))),
        ("£12.05 on 12/05", Money(Decimal("12.05"))),  # the date is not an amount
        ("-£5", Money(Decimal("-5.00"))),  # read, then refused by the validators
        ("£45 and £50", None),
        ("fifty pounds", None),
        ("45.999", None),
        ("12/05", None),
        ("", None),
    ],
)
def test_amounts_are_read_in_figures_with_their_currency(typed, expected):
    assert parse_amount(typed) == expected


def test_amounts_are_written_with_their_symbol_and_pence():
    assert [str(Money(Decimal("1200.5"))), str(Money(Decimal("20"), "EUR"))] == ["£1,200.50", "€20.00"]


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("yesterday", date(2025, 5, 13)),
        ("last night", date(2025, 5, 13)),
        ("the day before yesterday", date(2025, 5, 12)),
        ("today", WEDNESDAY),
        ("last Friday", date(2025, 5, 9)),
        ("on Wednesday", WEDNESDAY),
        ("last Wednesday", date(2025, 5, 7)),
        ("3 March", date(2025, 3, 3)),
        ("the 3rd of March 2024", date(2024, 3, 3)),
        ("March 3rd", date(2025, 3, 3)),
        ("20 December", date(2024, 12, 20)),  # no year: the latest 20 December so far
        ("12/05", date(2025, 5, 12)),  # day first
        ("12/05/2025", date(2025, 5, 12)),
        ("12.05.24", date(2024, 5, 12)),
        ("2025-05-12", date(2025, 5, 12)),
        ("3 days ago", date(2025, 5, 11)),
        ("a week ago", date(2025, 5, 7)),
        ("29 Feb", date(2024, 2, 29)),
        ("tomorrow", date(2025, 5, 15)),  # read, then refused as in the future
        ("31/02", None),
        ("3 March or 4 March", None),
        ("sometime last month", None),
        (None, None),
    ],
)
def test_dates_are_read_relative_to_today(typed, expected):
    assert parse_date(typed, today=WEDNESDAY) == expected


@pytest.mark.parametrize(
    "typed, expected",
    [("savings", "savings"), ("my current account", "current"), ("the joint one", "joint"), ("isa", "ISA"),
     ("from savings to current", None), ("checking", None), ("", None)],
)
def test_account_types_are_the_assistant_s_names(typed, expected):
    assert parse_account_type(typed) == expected


@pytest.mark.parametrize(
    "typed, expected",
    [("Tesco", "Tesco"), ("it was Amazon.", "Amazon"), ("paid to John Lewis", "John Lewis"), ("at Costa", "Costa"),
     ("Toby Carvery", "Toby Carvery"), ("123", None), ("4000 1234 5678 9010", None), ("it was", None),
     ("x" * 61, None)],
)
def test_merchant_names_lose_the_words_around_them(typed, expected):
    assert merchant_name(typed) == expected


def test_a_whole_card_number_is_a_long_digit_run_not_many_numbers():
    assert looks_like_full_card_number("4000 1234 5678 9010") and looks_like_full_card_number("[CARD]")
    assert not looks_like_full_card_number("£1,200.50 on 12/05/2025 with the card ending 4821")


def test_replies_name_the_card_and_the_day_in_words():
    assert card_words("credit", "4821") == "credit card ending 4821"
    assert card_words(None, "4821") == card_words("platinum", "4821") == "card ending 4821"
    assert day_words("2025-03-03") == "3 March 2025"


# ------------------------------------------------------------------ validation actions


def _tracker(text: str = "", intent: str = "inform", entities: Optional[List[Dict[str, Any]]] = None,
             slots: Optional[Dict[str, Any]] = None, active_loop: Optional[str] = None) -> Tracker:
    latest = {"intent": {"name": intent, "confidence": 0.9}, "entities": entities or [], "text": text}
    user = {"event": "user", "text": text, "parse_data": latest, "input_channel": "rest"}
    loop = {"name": active_loop} if active_loop else {}
    return Tracker("customer-1", dict(slots or {}), latest, [user], False, None, loop, "action_listen")


def _validate(form, slot: str, value: Any, tracker: Optional[Tracker] = None, domain_dict=None):
    dispatcher = CollectingDispatcher()
    result = getattr(form, f"validate_{slot}")(value, dispatcher, tracker or _tracker(str(value)), domain_dict or {})
    return result[slot], [m["response"] for m in dispatcher.messages]


@pytest.mark.parametrize(
    "value, kept, said",
    [
        ("£45.99", "£45.99", []),
        ("it was 20 euros", "€20.00", []),
        ("10000", "£10,000.00", []),
        ("£10,000.01", None, ["utter_dispute_amount_too_large"]),
        ("£0", None, ["utter_amount_not_positive"]),
        ("-£5", None, ["utter_amount_not_positive"]),
        ("a lot", None, ["utter_amount_invalid"]),
    ],
)
def test_a_disputed_amount_is_positive_in_figures_and_within_the_limit(value, kept, said):
    assert _validate(ValidateDisputePaymentForm(), "dispute_amount", value) == (kept, said)


def test_a_payment_date_is_one_day_not_in_the_future_and_kept_in_iso_form():
    form = ValidateDisputePaymentForm()
    today = date.today()
    assert _validate(form, "payment_date", "yesterday") == ((today - timedelta(days=1)).isoformat(), [])
    assert _validate(form, "payment_date", "tomorrow") == (None, ["utter_payment_date_in_future"])
    assert _validate(form, "payment_date", f"{today.day}/{today.month}/{today.year + 1}") == (
        None, ["utter_payment_date_in_future"])
    assert _validate(form, "payment_date", "a while back") == (None, ["utter_payment_date_invalid"])


def test_a_merchant_typed_in_a_whole_answer_loses_the_other_entities_in_it():
    form = ValidateDisputePaymentForm()
    text = "£45 at Joe's Cafe yesterday"
    entities = [{"entity": "amount", "start": 0, "end": 3, "value": "£45"},
                {"entity": "date", "start": 18, "end": 27, "value": "yesterday"}]
    assert _validate(form, "merchant", text, _tracker(text, entities=entities)) == ("Joe's Cafe", [])
    assert _validate(form, "merchant", "Amazon") == ("Amazon", [])
    assert _validate(form, "merchant", "£45", _tracker("£45", entities=[entities[0]])) == (
        None, ["utter_merchant_invalid"])


@pytest.mark.parametrize("form", [ValidateDisputePaymentForm(), ValidateFreezeCardForm()])
def test_card_last_four_is_exactly_four_digits_and_a_whole_number_gets_a_warning(form):
    assert _validate(form, "card_last_four", "4821") == ("4821", [])
    assert _validate(form, "card_last_four", "12") == (None, ["utter_card_last_four_invalid"])
    assert _validate(form, "card_last_four", "4000 1234 5678 9010") == (None, ["utter_full_card_number_warning"])
    # The entity alone looks fine, but the customer typed the whole number around it.
    typed = _tracker("my card is 4000 1234 5678 9010", entities=[{"entity": "card_last_four", "value": "9010"}])
    assert _validate(form, "card_last_four", "9010", typed) == (None, ["utter_full_card_number_warning"])


@pytest.mark.parametrize(
    "value, kept, said",
    [
        ("£250", "£250.00", []),
        ("25000", "£25,000.00", []),
        ("£25,000.50", None, ["utter_transfer_amount_too_large"]),
        ("$100", None, ["utter_transfer_amount_not_pounds"]),
        ("0", None, ["utter_amount_not_positive"]),
        ("some", None, ["utter_amount_invalid"]),
    ],
)
def test_a_transfer_is_in_pounds_positive_and_within_the_limit(value, kept, said):
    assert _validate(ValidateTransferForm(), "transfer_amount", value) == (kept, said)


def test_a_transfer_goes_between_two_different_known_accounts():
    form = ValidateTransferForm()
    to_current = _tracker(slots={"to_account": "current"})
    assert _validate(form, "from_account", "savings", to_current) == ("savings", [])
    assert _validate(form, "from_account", "my current account", to_current) == (None, ["utter_same_account"])
    from_isa = _tracker(slots={"from_account": "ISA"})
    assert _validate(form, "to_account", "isa", from_isa) == (None, ["utter_same_account"])
    assert _validate(form, "to_account", "my piggy bank", from_isa) == (None, ["utter_account_type_invalid"])


@pytest.mark.parametrize("form, slot", [(ValidateDisputePaymentForm(), "dispute_confirmed"),
                                        (ValidateTransferForm(), "transfer_confirmed"),
                                        (ValidateFreezeCardForm(), "freeze_confirmed")])
def test_confirmations_take_only_yes_or_no(form, slot):
    assert _validate(form, slot, True) == (True, [])
    assert _validate(form, slot, False) == (False, [])
    assert _validate(form, slot, "maybe later") == (None, ["utter_answer_yes_or_no"])


def test_a_form_starting_forgets_values_its_first_message_did_not_give(domain_dict):
    """A shop and card type left from an unfinished dispute are forgotten; the amount said now is kept."""
    form = ValidateDisputePaymentForm()
    amount = {"entity": "amount", "start": 20, "end": 23, "value": "£30", "confidence_entity": 0.99}
    slots = {"merchant": "Tesco", "dispute_amount": "£30", "card_type": "credit"}
    starting = _tracker("dispute a payment of £30", "dispute_payment", [amount], slots=slots,
                        active_loop="dispute_payment_form")
    # As Rasa sends it at activation: the loop became active after the message, then the filled slots.
    starting.events += [{"event": "active_loop", "name": "dispute_payment_form"},
                        {"event": "action", "name": "dispute_payment_form"},
                        {"event": "slot", "name": "merchant", "value": "Tesco"},
                        {"event": "slot", "name": "dispute_amount", "value": "£30"}]
    assert form.starting(starting) and form.left_over_slots(starting, domain_dict) == {"merchant", "card_type"}
    events = asyncio.run(form.run(CollectingDispatcher(), starting, domain_dict))
    assert {e["name"]: e["value"] for e in events} == {"merchant": None, "card_type": None, "dispute_amount": "£30.00"}

    running = _tracker("£30", entities=[amount], slots=slots, active_loop="dispute_payment_form")
    assert not form.starting(running)  # a later turn: what is filled stays


# ------------------------------------------------------------------ final actions


def _final(action, slots: Dict[str, Any], domain_dict) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, _tracker("yes", "affirm", slots=slots), domain_dict))
    return dispatcher.messages, {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


DISPUTE = {"merchant": "Amazon", "dispute_amount": "£45.99", "payment_date": "2025-03-03",
           "card_last_four": "4821", "card_type": "debit"}


@pytest.mark.parametrize("confirmed, response", [(True, "utter_dispute_recorded"), (False, "utter_dispute_not_sent"),
                                                 (None, "utter_dispute_cancelled")])
def test_a_dispute_ends_by_saying_what_happens_next_and_clearing_its_slots(domain_dict, confirmed, response):
    messages, slots = _final(ActionDisputePayment(), {**DISPUTE, "dispute_confirmed": confirmed}, domain_dict)
    assert messages[0]["response"] == response
    assert all(slots[name] is None for name in [*DISPUTE, "dispute_confirmed"])
    if confirmed:
        assert (messages[0]["amount"], messages[0]["merchant"], messages[0]["date"], messages[0]["card"]) == (
            "£45.99", "Amazon", "3 March 2025", "debit card ending 4821")
        assert [m["response"] for m in messages[1:]] == ["utter_ask_satisfaction"]
        template = domain_dict["responses"][response][0]["text"]
        assert all("{%s}" % key in template for key in ("amount", "merchant", "date", "card"))


@pytest.mark.parametrize("confirmed, response", [(True, "utter_transfer_done"), (False, "utter_transfer_not_made"),
                                                 (None, "utter_transfer_cancelled")])
def test_a_transfer_ends_by_saying_what_happened_and_clearing_its_slots(domain_dict, confirmed, response):
    transfer = {"transfer_amount": "£200.00", "from_account": "savings", "to_account": "current",
                "transfer_confirmed": confirmed}
    messages, slots = _final(ActionTransferMoney(), transfer, domain_dict)
    assert messages[0]["response"] == response
    assert all(slots[name] is None for name in transfer)
    if confirmed:
        assert (messages[0]["amount"], messages[0]["from_account"], messages[0]["to_account"]) == (
            "£200.00", "savings", "current")


# ------------------------------------------------------------------ whole form runs


class InProcessActionServer(EndpointConfig):
    """The action endpoint, answered by the Rasa SDK's executor in this process (no HTTP)."""

    def __init__(self) -> None:
        super().__init__(url="http://actions.in-process/webhook")
        self.executor = ActionExecutor()
        self.executor.register_package("bot.actions")

    async def request(self, method: str = "post", subpath: Optional[str] = None, content_type: Optional[str] = None,
                      compress: bool = False, **kwargs: Any) -> Any:
        return await self.executor.run(kwargs["json"])


class Conversation:
    """One customer: each turn parses nothing (the entities are given), extracts slots, then runs what Rasa would."""

    def __init__(self, domain: Domain, slots: Optional[Dict[str, Any]] = None) -> None:
        self.domain = domain
        self.endpoint = InProcessActionServer()
        self.nlg = TemplatedNaturalLanguageGenerator(domain.responses)
        events = [ActionExecuted(ACTION_LISTEN_NAME)] + [SlotSet(k, v) for k, v in (slots or {}).items()]
        self.tracker = DialogueStateTracker.from_events("customer-1", events, domain.slots)

    def say(self, text: str, intent: str, **entities: Any) -> None:
        """The customer's message, with entities given as type=(value, role or None) or type=value."""
        found = []
        for name, spec in entities.items():
            value, role = spec if isinstance(spec, tuple) else (spec, None)
            entity_type = name.rstrip("_0123456789")  # account_type_2=... for a second entity of a type
            start = text.find(value) if value in text else 0
            found.append({"entity": entity_type, "value": value, "start": start, "end": start + len(value),
                          "confidence_entity": 0.99, **({"role": role} if role else {})})
        parse = {"text": text, "intent": {"name": intent, "confidence": 0.95}, "entities": found}
        self.tracker.update(UserUttered(text, parse["intent"], found, parse_data=parse))
        self._apply(asyncio.run(ActionExtractSlots(self.endpoint).run(
            CollectingOutputChannel(), self.nlg, self.tracker, self.domain)))

    def run(self, action_name: str) -> List[str]:
        """Run a form or a custom action as the processor would; the responses it sent, by name."""
        if action_name.endswith("_form"):
            action = FormAction(action_name, self.endpoint)
        else:
            action = RemoteAction(action_name, self.endpoint)
        events = asyncio.run(action.run(CollectingOutputChannel(), self.nlg, self.tracker, self.domain))
        self.tracker.update(ActionExecuted(action_name))
        self._apply(events)
        return [e.metadata.get("utter_action") for e in events if isinstance(e, BotUttered)]

    def listen(self) -> None:
        self.tracker.update(ActionExecuted(ACTION_LISTEN_NAME))

    def _apply(self, events) -> None:
        for event in events:
            self.tracker.update(event, self.domain)

    def slot(self, name: str) -> Any:
        return self.tracker.get_slot(name)

    @property
    def active_loop(self) -> Optional[str]:
        return self.tracker.active_loop_name


def test_a_dispute_with_shop_amount_and_day_up_front_asks_only_for_the_card_then_records_it(domain):
    chat = Conversation(domain)
    chat.say("I don't recognise a payment of £45.99 to Amazon on 3 March 2025", "dispute_payment",
             amount="£45.99", merchant="Amazon", date="3 March 2025")
    assert chat.run("dispute_payment_form") == ["utter_ask_dispute_payment_form_card_last_four"]
    assert (chat.slot("merchant"), chat.slot("dispute_amount"), chat.slot("payment_date")) == (
        "Amazon", "£45.99", "2025-03-03")
    chat.listen()

    chat.say("4000 1234 5678 9010", "inform_card_digits")  # typed: no entity, the whole text is read
    assert chat.run("dispute_payment_form") == ["utter_full_card_number_warning",
                                               "utter_ask_dispute_payment_form_card_last_four"]
    chat.listen()

    chat.say("the credit card ending 4821", "inform_card_digits", card_last_four="4821", card_type="credit")
    assert chat.run("dispute_payment_form") == ["utter_confirm_dispute"]
    chat.listen()

    chat.say("yes", "affirm")
    assert chat.run("dispute_payment_form") == []
    assert chat.active_loop is None and chat.slot("dispute_confirmed") is True
    assert chat.run("action_dispute_payment")[0] == "utter_dispute_recorded"
    assert [chat.slot(s) for s in ("merchant", "dispute_amount", "payment_date", "card_last_four", "card_type")] == [
        None] * 5


def test_a_dispute_asks_each_question_and_an_answer_may_fill_several(domain):
    chat = Conversation(domain)
    chat.say("I want to dispute a payment", "dispute_payment")
    assert chat.run("dispute_payment_form") == ["utter_ask_merchant"]
    chat.listen()
    chat.say("Joe's Cafe, £12.50", "inform", amount="£12.50")  # the shop's name missed by the NLU: typed text
    assert chat.run("dispute_payment_form") == ["utter_ask_payment_date"]
    assert (chat.slot("merchant"), chat.slot("dispute_amount")) == ("Joe's Cafe", "£12.50")
    chat.listen()
    chat.say("tomorrow", "inform", date="tomorrow")
    assert chat.run("dispute_payment_form") == ["utter_payment_date_in_future", "utter_ask_payment_date"]
    chat.listen()
    chat.say("no, forget it", "deny")  # the form cannot use it: the rule stops the form with its final action
    with pytest.raises(ActionExecutionRejection):
        chat.run("dispute_payment_form")
    assert chat.run("action_dispute_payment") == ["utter_dispute_cancelled"]
    assert chat.slot("merchant") is None


def test_a_transfer_takes_the_accounts_by_role_and_refuses_the_same_account_twice(domain):
    chat = Conversation(domain)
    chat.say("move £50 to my savings", "transfer_money", amount="£50", account_type=("savings", "to"))
    assert chat.run("transfer_form") == ["utter_ask_from_account"]
    assert (chat.slot("transfer_amount"), chat.slot("to_account")) == ("£50.00", "savings")
    chat.listen()
    chat.say("savings", "inform", account_type="savings")  # no role: the answer to the question asked
    assert chat.run("transfer_form") == ["utter_same_account", "utter_ask_from_account"]
    chat.listen()
    # "checking", mapped by the synonym; the NLU gave the bare answer the wrong role: the form asked for
    # the account the money comes from, so that is what it fills, and the destination stays.
    chat.say("checking", "inform", account_type=("current", "to"))
    assert chat.run("transfer_form") == ["utter_ask_transfer_confirmed"]
    assert (chat.slot("from_account"), chat.slot("to_account")) == ("current", "savings")
    chat.listen()
    chat.say("no", "deny")
    assert chat.run("transfer_form") == []
    assert chat.slot("transfer_confirmed") is False
    assert chat.run("action_transfer_money") == ["utter_transfer_not_made"]


def test_a_transfer_given_whole_in_the_first_message_goes_straight_to_the_confirmation(domain):
    chat = Conversation(domain)
    chat.say("move £200 from my savings to my current account", "transfer_money", amount="£200",
             account_type=("savings", "from"), account_type_2=("current", "to"))
    assert chat.run("transfer_form") == ["utter_ask_transfer_confirmed"]
    filled = [chat.slot(s) for s in ("transfer_amount", "from_account", "to_account")]
    assert filled == ["£200.00", "savings", "current"]


def test_the_freeze_form_takes_the_card_from_the_entity_and_forgets_an_old_one(domain):
    chat = Conversation(domain)
    chat.say("freeze my card ending 4821", "freeze_card", card_last_four="4821")
    assert chat.run("freeze_card_form") == ["utter_ask_freeze_confirmed"]
    assert chat.slot("card_last_four") == "4821"

    # Left from a dispute that never finished: not what this freeze is about.
    chat = Conversation(domain, slots={"card_last_four": "1111", "merchant": "Tesco"})
    chat.say("please freeze my card", "freeze_card")
    assert chat.run("freeze_card_form") == ["utter_ask_card_last_four"]
    assert chat.slot("card_last_four") is None


def test_every_form_is_started_submitted_stopped_and_interrupted_by_rules(domain):
    """bot/data/rules.yml: the same ways in, out and around for each form (docs/architecture.md)."""
    import yaml

    rules = yaml.safe_load((PROJECT_ROOT / "bot" / "data" / "rules.yml").read_text(encoding="utf-8"))["rules"]
    for form in domain.form_names:
        inside = [r["steps"] for r in rules if {"active_loop": form} in (r.get("condition") or [])]
        first_intents = {steps[0].get("intent") for steps in inside}
        assert {"bot_challenge", "request_human", "complaint", "frustrated", "deny"} <= first_intents, form
        assert any(steps[0] == {"action": form} and {"active_loop": None} in steps for steps in inside), form
        assert any({"action": form} in r["steps"] and "condition" not in r for r in rules), form  # a rule starts it
        handoffs = [steps for steps in inside if steps[0].get("intent") in ("request_human", "complaint", "frustrated")]
        assert all(steps[-1] == {"action": "action_handoff"} for steps in handoffs), form


def test_full_width_digits_are_read_like_ascii_ones():
    """What Chinese and Japanese keyboards type."""
    from bot.actions.slot_values import looks_like_full_card_number, parse_amount, parse_card_last_four

    assert parse_card_last_four("１２３４") == "1234" and parse_card_last_four("尾号５６７８") == "5678"
    assert looks_like_full_card_number("４２４２ ４２４２ ４２４２ ４２４２")
    assert parse_amount("＄５０") == parse_amount("$50")


def test_a_form_lets_go_after_three_answers_in_a_row_it_cannot_use(domain):
    """A customer who has moved on gets the form's end, not the same question for ever."""
    chat = Conversation(domain)
    chat.say("please freeze my card", "freeze_card")
    assert chat.run("freeze_card_form") == ["utter_ask_card_last_four"]
    chat.listen()
    for question in ("what is the exchange rate", "how do I top up"):
        chat.say(question, "exchange_rate")
        assert chat.run("freeze_card_form") == ["utter_card_last_four_invalid", "utter_ask_card_last_four"]
        chat.listen()
    assert chat.slot("form_failed_answers") == 2
    chat.say("can I get a virtual card", "virtual_card")
    assert chat.run("freeze_card_form") == ["utter_form_given_up"]
    assert chat.active_loop is None and chat.slot("requested_slot") is None and chat.slot("form_failed_answers") == 0
    assert chat.run("action_freeze_card") == ["utter_freeze_cancelled"]  # the submit rule: nothing was frozen


def test_an_answer_the_form_can_use_starts_the_count_again(domain):
    chat = Conversation(domain)
    chat.say("please freeze my card", "freeze_card")
    chat.run("freeze_card_form")
    chat.listen()
    for text, intent, entities in [("12", "inform_card_digits", {}), ("hm", "inform", {}),
                                   ("ends 4821", "inform_card_digits", {"card_last_four": "4821"}),
                                   ("what?", "inform", {}), ("perhaps", "inform", {})]:
        chat.say(text, intent, **entities)
        chat.run("freeze_card_form")
        chat.listen()
    # Two unusable yes-or-no answers after the digits: still asking, not stopped.
    assert chat.active_loop == "freeze_card_form" and chat.slot("card_last_four") == "4821"
    assert chat.slot("form_failed_answers") == 2
