"""Finding the customers' requests in a history and the agent answers that resolved them (issue 19).
Conversations here and in tests/fixtures/onboarding/ are synthetic."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import pytest

from core.settings import PROJECT_ROOT
from training.onboard.requests import Request, find_requests
from training.onboard.transcripts import Conversation, Turn, read_transcripts

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "onboarding"


def conversation(*turns: Tuple[str, str], rating: Optional[float] = None, cid: str = "c") -> Conversation:
    """A conversation of ("customer"|"agent", text) turns, one a line from line 1."""
    return Conversation(cid, "chats.txt", 1, [Turn(s, t, None, n) for n, (s, t) in enumerate(turns, start=1)], rating)


def C(text: str) -> Tuple[str, str]:
    return "customer", text


def A(text: str) -> Tuple[str, str]:
    return "agent", text


def test_the_fixture_history_gives_each_request_its_answer_and_whether_it_was_resolved():
    requests = find_requests(read_transcripts(FIXTURES / "good").conversations)

    table = {r.id: (r.source, r.opening, r.resolved, r.text, r.answer[:20]) for r in requests}
    assert table == {
        "chat-1/2": ("chats.txt:6", True, True, "I lost my debit card yesterday, can you block it? my email is [EMAIL]",
                     "I have blocked the c"),
        "chat-2/0": ("chats.txt:13", True, True, "How do I change the address on my account?",
                     "In that case please "),
        "chat-2/4": ("chats.txt:17", False, True, "what is the daily limit for cash withdrawals?",
                     "The daily cash limit"),
        "conv-1/0": ("conversations.jsonl:1", True, True, "How do I reset my online banking password?",
                     "Use Forgot password "),
        "conv-2/0": ("conversations.jsonl:2", True, False, "Why was I charged a fee for my overdraft?",
                     "Overdraft fees apply"),
        "147/1": ("intercom_conversation.json:1", True, True, "How do I add my partner as a second card holder?",
                  "You can add a second"),
        "T-100/1": ("turns.csv:3", True, True, "Can I open a savings account for my child?",
                    "Yes, children under "),
        "T-101/0": ("turns.csv:6", True, False, "My card payment was declined at a shop today",
                    "Please check that co"),
        "th-7/0": ("turns.jsonl:1", True, True, "How long does an international transfer take?",
                   "Transfers abroad arr"),
        "th-8/0": ("turns.jsonl:3", True, True, "Is there a fee for paying in coins?", "Paying in coins is f"),
        "35436/0": ("zendesk_tickets.json:3", True, True, "I was charged twice for the same order 88123.",
                    "Sorry about that. We"),
    }
    why = {r.id: r.evidence for r in requests}
    assert why["T-101/0"][-1] == "not resolved: after the answer the customer said 'still not working' (turns.csv:8)"
    assert why["conv-2/0"][-1] == "not resolved: the conversation was rated 0.00 (0..1)"
    assert why["35436/0"][-1] == "resolved: the conversation was rated 1.00 (0..1)"
    assert why["chat-2/4"] == ["new request: the customer said 'also'",
                               "resolved: the conversation ended after the answer without a complaint"]
    assert [r.rating for r in requests if r.conversation == "conv-1"] == [0.9]


def test_greetings_are_no_request_and_are_left_out_of_the_opening_one():
    [request] = find_requests([conversation(C("hello there"), A("Hi, how can I help you today?"), C("Hi"),
                                            C("Can I pay my credit card bill by direct debit?"),
                                            A("Yes, set it up under Payments."), C("Thanks!"),
                                            A("You're welcome, have a nice day!"))])

    assert (request.id, request.text, request.opening) == ("c/3", "Can I pay my credit card bill by direct debit?", True)
    assert request.answer == "Yes, set it up under Payments."
    assert request.resolved and request.evidence[-1] == "resolved: after the answer the customer said 'Thanks!' (chats.txt:6)"
    assert find_requests([conversation(C("hi"), A("Hello!"), C("are you there?"))]) == []


def test_a_thank_you_with_a_new_question_resolves_one_request_and_opens_the_next():
    first, second = find_requests([conversation(
        C("How do I order a new cheque book?"), A("Order one in the app under Services."),
        C("Thanks! Also, how do I change my PIN?"), A("Change it at any cash machine."))])

    assert first.resolved and first.evidence[-1].startswith("resolved: after the answer the customer said 'Thanks!")
    assert (second.id, second.text, second.opening) == ("c/2", "how do I change my PIN?", False)
    assert second.answer == "Change it at any cash machine." and second.resolved


def test_one_more_thing_announces_a_request_that_the_next_message_asks():
    requests = find_requests([conversation(
        C("Can I increase my overdraft?"), A("Yes, request it in the app."), C("One more thing."),
        A("Sure, go ahead."), C("Do you offer travel insurance?"), A("Yes, with the premium account."))])

    assert [(r.id, r.text, r.answer) for r in requests] == [
        ("c/0", "Can I increase my overdraft?", "Yes, request it in the app."),
        ("c/4", "Do you offer travel insurance?", "Yes, with the premium account."),
    ]
    assert requests[1].evidence[0] == "new request: the customer said 'one more thing'"


def test_the_answer_after_a_complaint_is_the_one_that_resolved_it():
    [request] = find_requests([conversation(
        C("My card was declined online"), A("Please check that online payments are on in the app."),
        C("that didn't help, they are on"), A("Which shop was it?"), C("a travel site"),
        A("Some travel sites need 3-D Secure: approve the payment in the app when asked."),
        C("That worked, thank you"))])

    assert request.answer.startswith("Some travel sites need 3-D Secure")
    assert request.resolved and request.agent_turns == 3
    assert request.evidence[-1] == "resolved: after the answer the customer said 'That worked, thank you' (chats.txt:7)"


@pytest.mark.parametrize("turns, rating, resolved, evidence", [
    ([C("Can I get my salary early?"), A("No, salaries arrive on the payer's date.")], 0.0, False,
     "not resolved: the conversation was rated 0.00 (0..1)"),
    ([C("Can I get my salary early?"), A("Yes, with early pay in the app."), C("still not working")], 1.0, False,
     "not resolved: after the answer the customer said 'still not working' (chats.txt:3)"),
    ([C("Can I get my salary early?"), A("Yes, with early pay in the app.")], None, True,
     "resolved: the conversation ended after the answer without a complaint"),
    ([C("Can I get my salary early?")], 1.0, False, "no agent answered it"),
])
def test_resolution_follows_the_customers_words_then_the_rating_then_the_end(turns, rating, resolved, evidence):
    [request] = find_requests([conversation(*turns, rating=rating)])

    assert (request.resolved, request.evidence[-1]) == (resolved, evidence)
    assert request.answer == ("" if len(turns) == 1 else turns[1][1])
    assert request.agent_turns == (len(turns) > 1)


class KeywordEncoder:
    """Vectors from a few topic words, so that similarity is known without a model."""

    TOPICS = ("card", "transfer", "mortgage")

    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize_embeddings: bool = True) -> np.ndarray:
        rows: List[List[float]] = [[float(topic in t.lower()) for topic in self.TOPICS] + [0.1] for t in texts]
        vectors = np.asarray(rows)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_with_an_encoder_a_message_far_from_the_request_and_the_answer_is_a_new_request():
    history = [conversation(
        C("My card is stuck in the cash machine"), A("We have cancelled the card and will post a new one."),
        C("And the new card, will it have the same number?"), A("No, a new number."),
        C("How big a mortgage could I get on my salary?"), A("Use the mortgage calculator on our site."))]

    without = find_requests(history)
    with_encoder = find_requests(history, encoder=KeywordEncoder())

    assert [r.id for r in without] == ["c/0"]
    assert [r.id for r in with_encoder] == ["c/0", "c/4"]
    assert with_encoder[1].evidence[0].startswith("new request: similarity 0.")
    assert with_encoder[0].answer == "No, a new number."


def test_a_reply_to_the_agents_question_is_never_a_new_request():
    history = [conversation(C("My card is stuck in the cash machine"), A("Which cash machine was it?"),
                            C("The one on the high street by the station"), A("We have cancelled the card."))]

    assert [r.id for r in find_requests(history, encoder=KeywordEncoder())] == ["c/0"]


def test_with_the_bundled_encoder_follow_ups_stay_and_an_unrelated_question_is_new():
    from core.encoder import load_encoder

    history = [conversation(
        C("How long does an international transfer take?"), A("Transfers abroad arrive within 1 to 3 working days."),
        C("what about transfers to the US?"), A("The same, 1 to 3 working days."),
        C("how do I order a new cheque book"), A("Order one in the app under Services."))]

    requests = find_requests(history, encoder=load_encoder("bundled"))

    assert [r.text for r in requests] == ["How long does an international transfer take?",
                                          "how do I order a new cheque book"]


def test_in_another_language_the_english_cue_lists_are_not_applied():
    history = [conversation(C("你好"), A("您好，请问有什么可以帮您？"), C("我的银行卡丢了怎么办"),
                            A("我已经为您冻结了这张卡。"), C("谢谢"), cid="zh")]

    [request] = find_requests(history, language="zh")

    assert (request.id, request.text, request.answer) == ("zh/2", "我的银行卡丢了怎么办", "我已经为您冻结了这张卡。")
    assert request.resolved and request.evidence[-1].startswith("resolved: the conversation ended")
    english_cue = conversation(C("How do I close my account?"), A("In the app."), C("Also, what are your fees?"))
    assert len(find_requests([english_cue], language="de")) == 1
    assert len(find_requests([english_cue], language="en")) == 2


def test_request_ids_are_unique_and_the_same_on_every_run():
    conversations = read_transcripts(FIXTURES / "good").conversations

    ids = [r.id for r in find_requests(conversations)]

    assert len(ids) == len(set(ids)) and ids == [r.id for r in find_requests(conversations)]
    assert all(isinstance(r, Request) for r in find_requests(conversations))


def test_a_complaint_is_never_a_new_request_however_far_it_is_from_the_request():
    history = [conversation(C("My card is stuck in the cash machine"), A("Transfers take a day."),
                            C("no that doesn't answer my question at all"), A("We have cancelled the card."))]

    [request] = find_requests(history, encoder=KeywordEncoder())

    assert request.answer == "We have cancelled the card." and request.resolved


def test_an_ok_with_a_follow_up_question_is_no_thanks_and_anything_else_is_no_question_to_answer():
    [request] = find_requests([conversation(
        C("Can I raise my card limit?"), A("Yes, up to 5,000 in the app."), C("ok, and how long will that take?"),
        A("It changes at once."), C("still not working"))])

    assert request.answer == "It changes at once." and not request.resolved
    history = [conversation(C("My card is stuck in the cash machine"),
                            A("We have cancelled it. Anything else I can help with?"),
                            C("How big a mortgage could I get on my salary?"))]
    assert len(find_requests(history, encoder=KeywordEncoder())) == 2
