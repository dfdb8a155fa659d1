"""Labelled synthetic chat history of a made-up online shop, for testing the onboarding flow.

    python -m training.onboard.synthetic --out transcripts/ [--labels labels.csv] \\
        [--conversations 240] [--seed 7] [--topics N] [--formats jsonl,csv,txt,zendesk]

Writes the conversations of "Larkspur Home" (a made-up furniture and home
shop, not the demo bank) between customers and agents, split over four
formats a helpdesk exports:

- ``synthetic_conversations.jsonl``: one conversation a line, ``{"id",
  "updated_at", "rating", "synthetic": true, "turns": [{"speaker", "time",
  "text"}]}`` (the transcript JSONL `retrieval.ingest` reads);
- ``synthetic_turns.csv``: one turn a row, columns ``conversation_id, time,
  speaker, text, rating`` (the rating on the conversation's last row);
- ``synthetic_transcripts.txt``: ``[2026-01-05 10:02] Customer: ...`` lines,
  ``# conversation:``/``# date:``/``# rating:`` headers, a blank line between
  conversations (the plain-text format `retrieval.ingest` reads);
- ``synthetic_zendesk.json``: Zendesk Support tickets as its API returns them
  with users side-loaded (``{"tickets": [{"id", "external_id", "subject",
  "requester_id", "created_at", "status", "satisfaction_rating": {"score"},
  "tags", "comments": [{"id", "type", "author_id", "body", "plain_body",
  "public", "created_at"}]}], "users": [{"id", "name", "role"}]}``; a
  comment's author is a customer when its role is ``end-user``.

Each conversation has one or two requests of ~10 topics, each said in several
phrasings with random variation (greetings, fillers, typos, lower case);
simple questions get a consistently worded answer (now and then first a wrong
or unhelpful one, which the customer says did not help), tasks get a question
for the order number and a confirmation; greetings, thanks, ratings and
personal data (names, e-mail addresses, phone numbers) that redaction must
remove. The true topic of each request goes to the labels file (CSV:
``conversation_id, file, file_id, request, topic, kind, text``; ``file_id`` is
the conversation's id as its file gives it, a ticket id for Zendesk), written outside the
transcripts folder so discovery never reads it.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import io
import json
import random
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from core.files import replacing_folder, write_text_atomically

COMPANY = "Larkspur Home"
FORMATS = ("jsonl", "csv", "txt", "zendesk")
FILES = {"jsonl": "synthetic_conversations.jsonl", "csv": "synthetic_turns.csv",
         "txt": "synthetic_transcripts.txt", "zendesk": "synthetic_zendesk.json"}
START = datetime.datetime(2026, 1, 5, 9, 0)
ZENDESK_FIRST_TICKET = 1001


@dataclasses.dataclass(frozen=True)
class Topic:
    """One kind of request: its phrasings and how agents answer it.

    A question's `answers` are wordings of one consistent answer; a task's
    `answers` are confirmations with ``{order}``, after the agent asks for it.
    """

    name: str
    kind: str  # "question" or "task"
    requests: Tuple[str, ...]
    answers: Tuple[str, ...]


ITEMS = ("sofa", "lamp", "rug", "armchair", "bookcase", "mirror", "bed frame", "dining table", "duvet", "curtains")

# Questions and tasks alternate (up to the last two), so that the first N topics (--topics) hold both.
TOPICS: Tuple[Topic, ...] = (
    Topic("delivery_time", "question", (
        "how long does delivery take",
        "how many days until my {item} is delivered",
        "when will a {item} arrive if I order today",
        "what are your delivery times",
        "how quickly do you deliver",
        "if I buy the {item} now how soon can I get it",
        "how long is shipping to my house",
    ), (
        "Standard delivery takes 3 to 5 working days; express delivery arrives the next working day when you order before 2pm.",
        "Our standard delivery is 3-5 working days, and express gets to you the next working day if ordered before 2pm.",
        "Delivery normally takes 3 to 5 working days. Order express before 2pm and it comes the next working day.",
    )),
    Topic("order_status", "task", (
        "where is my order",
        "my {item} hasn't arrived yet",
        "can you track my order",
        "what's the status of my order",
        "I ordered a {item} last week and nothing has come",
        "has my order been shipped",
    ), (
        "Thanks, order {order} left our warehouse yesterday and should be with you tomorrow.",
        "I've checked order {order}: it's with the courier and arrives within 2 working days.",
        "Order {order} is packed and ships today; you'll get a tracking e-mail tonight.",
    )),
    Topic("return_item", "question", (
        "how do I return an item",
        "I want to send back the {item}",
        "can I return a {item} I don't like",
        "what is your returns policy",
        "the {item} doesn't fit, how do I return it",
        "how do I send something back to you",
    ), (
        "You can return anything within 30 days: print the free returns label from the Orders page of your account and drop the parcel at any post office.",
        "Returns are free within 30 days. Print the returns label from Orders in your account and take the parcel to a post office.",
        "Within 30 days you can send it back for free: the returns label is on your account's Orders page, then drop it at any post office.",
    )),
    Topic("cancel_order", "task", (
        "I want to cancel my order",
        "please cancel the {item} I ordered",
        "can I cancel an order",
        "I ordered by mistake, cancel it please",
        "how do I cancel my {item} order",
        "I changed my mind about the {item}, cancel it",
    ), (
        "Done: order {order} is cancelled and the refund is on its way to your payment method.",
        "I've cancelled order {order}; you'll get a confirmation e-mail and the money back within 5 working days.",
        "Order {order} has been cancelled, and a confirmation e-mail is on its way.",
    )),
    Topic("refund_time", "question", (
        "when will I get my refund",
        "I sent the {item} back, where is my money",
        "how long do refunds take",
        "my refund hasn't arrived yet",
        "how long until I'm refunded for the returned {item}",
        "still waiting on a refund for my return",
    ), (
        "Refunds go back to your original payment method within 5 working days of the return reaching our warehouse.",
        "Once your return reaches our warehouse, the refund is made to your original payment method within 5 working days.",
        "You'll be refunded to the card or account you paid with within 5 working days after we receive the return.",
    )),
    Topic("change_address", "task", (
        "I need to change my delivery address",
        "can you send the {item} to a different address",
        "I moved, please update the address on my order",
        "wrong delivery address on my order",
        "how can I change where my order is delivered",
        "please deliver the {item} to my office instead",
    ), (
        "I've updated the delivery address on order {order}; the new one shows in your account now.",
        "Order {order} will now go to the new address you gave me.",
        "Done, the delivery address of order {order} is changed.",
    )),
    Topic("discount_code", "question", (
        "my discount code doesn't work",
        "the promo code is not accepted at checkout",
        "why can't I use my voucher code",
        "how do I apply a discount code",
        "the coupon says invalid when I buy the {item}",
        "the 10% off code isn't working",
    ), (
        "Discount codes work on full-price items only, one code per order: type it in the basket before you go to checkout.",
        "A code applies to full-price items only and only one per order; enter it in the basket, before checkout.",
        "Codes are valid on full-price items, one per order. Please enter the code in your basket before checking out.",
    )),
    Topic("password_reset", "question", (
        "I forgot my password",
        "how do I reset my password",
        "I can't log in to my account",
        "locked out of my account, need a new password",
        "the password reset email never came",
        "how can I change my password",
    ), (
        "Use 'Forgot password' on the sign-in page and we'll e-mail you a reset link that works for 24 hours; check your spam folder too.",
        "Click 'Forgot password' when signing in: a reset link valid for 24 hours is e-mailed to you (look in spam if it doesn't show up).",
        "On the sign-in page choose 'Forgot password'. The reset link we e-mail lasts 24 hours, and sometimes lands in spam.",
    )),
    Topic("damaged_item", "task", (
        "my {item} arrived damaged",
        "the {item} came broken",
        "there is a scratch on the {item} you delivered",
        "part of my order arrived damaged",
        "I received a damaged {item}, what now",
        "the box was crushed and the {item} is broken",
    ), (
        "I'm sorry about that. I've arranged a replacement for order {order}; the courier collects the damaged one when delivering it.",
        "Sorry! A replacement for order {order} is on its way and the courier will take the damaged item back.",
        "Apologies for that: order {order} gets a free replacement, and we collect the damaged item at the same time.",
    )),
    Topic("payment_methods", "question", (
        "what payment methods do you accept",
        "can I pay with PayPal",
        "do you take Mastercard",
        "can I pay for the {item} in instalments",
        "which cards can I pay with",
        "is it possible to pay with a gift card",
    ), (
        "We accept Visa, Mastercard, American Express, PayPal and Larkspur gift cards; orders over 300 pounds can be paid in 3 instalments with PayPal.",
        "You can pay by Visa, Mastercard, Amex, PayPal or a Larkspur gift card, and split orders over 300 pounds into 3 PayPal instalments.",
        "Visa, Mastercard, American Express, PayPal and our gift cards are all fine; PayPal lets you pay orders over 300 pounds in 3 instalments.",
    )),
)

UNHELPFUL = (
    "Please have a look at the help pages on our website.",
    "Could you check your account page?",
    "I'm not sure, please try again later.",
)
DIDNT_HELP = ("that didn't help", "That didn't help, sorry.", "no that doesn't answer my question",
              "hmm, that's not what I asked", "That didn't help at all")
GREETINGS = ("Hi", "Hello", "Hello there", "Hey", "Good morning", "hi!")
AGENT_HELLO = (f"Hello, thanks for contacting {COMPANY}! How can I help?", "Hi! How can I help you today?",
               f"Good day, you're through to {COMPANY} support. What can I do for you?")
OPENERS = ("", "", "", "Hi, ", "Hello, ", "hey ", "Good afternoon. ", "Quick question: ", "Hi there, ")
FILLERS = ("", "", "", "I was wondering ", "please tell me ", "can you tell me ", "sorry to bother you but ")
CLOSERS = ("?", "?", "", ".", " please", "? thanks", "?? ", " - thank you")
SECOND = ("Also, ", "One more thing: ", "And ", "Another question: ")
THANKS = ("Thanks!", "thank you", "Great, thanks a lot", "ok thanks", "Perfect, cheers")
AGENT_BYE = ("You're welcome, have a nice day!", "Glad I could help!", f"Happy to help. Thanks for shopping with {COMPANY}.")
ASK_ORDER = ("Could you give me your order number, please?", "Sure, what's the order number?",
             "I can look into that. Which order number is it?")
GIVE_ORDER = ("It's {order}", "{order}", "order number {order}", "Sure, {order}")
FIRST = ("Maria", "James", "Aisha", "Tom", "Priya", "Lukas", "Sofia", "Daniel", "Chloe", "Omar")
LAST = ("Lopez", "Carter", "Khan", "Fischer", "Novak", "Murphy", "Rossi", "Okafor", "Bennett", "Silva")


@dataclasses.dataclass
class Turn:
    speaker: str  # "customer" or "agent"
    text: str
    time: datetime.datetime


@dataclasses.dataclass
class Conversation:
    id: str
    turns: List[Turn]
    rating: Optional[int]  # 1-5, None when the customer gave none
    requests: List[Tuple[str, str]]  # (topic, the request's text as written)


def _vary(text: str, rng: random.Random) -> str:
    """One customer's way of writing `text`: a filler, a typo, lower or sentence case."""
    filler = rng.choice(FILLERS)
    if filler and not text.startswith(("what", "how", "when", "why", "where", "which")):
        filler = ""
    text = filler + text
    if rng.random() < 0.15:  # one slip of the keyboard
        words = text.split()
        long = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
        if long:
            i = rng.choice(long)
            j = rng.randrange(1, len(words[i]) - 2)
            words[i] = words[i][:j] + words[i][j + 1] + words[i][j] + words[i][j + 2:]
            text = " ".join(words)
    return text


def _personal_data(rng: random.Random) -> Tuple[str, str]:
    """A made-up customer's name and one way they state who they are (name, e-mail or phone)."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    name = f"{first} {last}"
    email = f"{first.lower()}.{last.lower()}@example.com"
    phone = f"07700 900{rng.randrange(100, 999)}"
    return name, rng.choice((f"This is {name}, {email}. ", f"my name is {name} ", f"I'm {name}, phone {phone}. ",
                             f"My email is {email} - ", f"(call me on {phone}) "))


def _request_text(topic: Topic, rng: random.Random, opener: str = "") -> str:
    text = _vary(rng.choice(topic.requests).format(item=rng.choice(ITEMS)), rng)
    text = opener + text + rng.choice(CLOSERS)
    text = text.strip()
    if rng.random() < 0.3:
        text = text.lower()
    return text[:1].upper() + text[1:] if rng.random() < 0.6 else text


def conversation(number: int, topics: Sequence[Topic], rng: random.Random) -> Conversation:
    """One synthetic conversation (its turns, rating and the requests' true topics)."""
    clock = START + datetime.timedelta(minutes=rng.randrange(0, 60 * 24 * 60))
    turns: List[Turn] = []

    def say(speaker: str, text: str) -> None:
        nonlocal clock
        clock += datetime.timedelta(seconds=rng.randrange(20, 240))
        turns.append(Turn(speaker, text, clock))

    opener = rng.choice(OPENERS)
    if rng.random() < 0.3:
        say("customer", rng.choice(GREETINGS))
        say("agent", rng.choice(AGENT_HELLO))
        opener = ""
    if rng.random() < 0.3:
        opener += _personal_data(rng)[1]
    chosen = [rng.choice(topics)]
    if len(topics) > 1 and rng.random() < 0.25:
        chosen.append(rng.choice([t for t in topics if t is not chosen[0]]))
    requests, unhappy = [], False
    for position, topic in enumerate(chosen):
        text = _request_text(topic, rng, opener if position == 0 else rng.choice(SECOND))
        requests.append((topic.name, text))
        say("customer", text)
        if topic.kind == "question":
            if rng.random() < 0.12:  # a wrong or unhelpful answer first
                wrong = [t for t in topics if t.kind == "question" and t is not topic]
                say("agent", rng.choice(rng.choice(wrong).answers) if wrong and rng.random() < 0.5 else rng.choice(UNHELPFUL))
                say("customer", rng.choice(DIDNT_HELP))
                unhappy = True
            say("agent", rng.choice(topic.answers))
        else:
            order = f"LH-{rng.randrange(100000, 999999)}"
            say("agent", rng.choice(ASK_ORDER))
            say("customer", rng.choice(GIVE_ORDER).format(order=order))
            say("agent", rng.choice(topic.answers).format(order=order))
    if rng.random() < 0.7:
        say("customer", rng.choice(THANKS))
        say("agent", rng.choice(AGENT_BYE))
    rating = None
    if rng.random() < 0.6:
        # 1..5 stars; never 1, which a reader may take for the top of a 0..1 scale
        rating = rng.choice((2, 2, 3)) if unhappy else rng.choice((4, 5, 5))
    return Conversation(f"synthetic-{number:05d}", turns, rating, requests)


def generate(conversations: int, seed: int = 7, topics: Optional[int] = None) -> List[Conversation]:
    """`conversations` synthetic conversations over the first `topics` topics (all when None), reproducibly."""
    if conversations < 1:
        raise ValueError("--conversations must be at least 1")
    pool = TOPICS[: topics or len(TOPICS)]
    if len(pool) < 2:
        raise ValueError(f"--topics must be between 2 and {len(TOPICS)}")
    rng = random.Random(seed)
    return [conversation(n, pool, rng) for n in range(1, conversations + 1)]


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def as_jsonl(conversations: Sequence[Conversation]) -> str:
    lines = []
    for c in conversations:
        lines.append(json.dumps({
            "id": c.id, "synthetic": True, "updated_at": _iso(c.turns[-1].time), "rating": c.rating,
            "turns": [{"speaker": t.speaker, "time": _iso(t.time), "text": t.text} for t in c.turns],
        }, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def as_csv(conversations: Sequence[Conversation]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["conversation_id", "time", "speaker", "text", "rating"])
    for c in conversations:
        for position, t in enumerate(c.turns):
            last = position == len(c.turns) - 1
            writer.writerow([c.id, _iso(t.time), t.speaker, t.text, c.rating if last and c.rating else ""])
    return out.getvalue()


def as_txt(conversations: Sequence[Conversation]) -> str:
    blocks = [f"# Synthetic transcripts of {COMPANY}, a made-up online shop (training.onboard.synthetic)."]
    for c in conversations:
        lines = [f"# conversation: {c.id}", f"# date: {c.turns[0].time:%Y-%m-%d}"]
        if c.rating:
            lines.append(f"# rating: {c.rating}")
        lines += [f"[{t.time:%Y-%m-%d %H:%M}] {t.speaker.capitalize()}: {t.text}" for t in c.turns]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def as_zendesk(conversations: Sequence[Conversation], first_ticket: int = ZENDESK_FIRST_TICKET) -> str:
    """Zendesk Support tickets with their comments, users side-loaded (`?include=users`)."""
    agents = [{"id": 9001 + i, "name": f"Synthetic Agent {i + 1}", "role": "agent"} for i in range(3)]
    users, tickets = list(agents), []
    comment_id = 50001
    for number, c in enumerate(conversations):
        requester = {"id": 20001 + number, "name": f"Synthetic Customer {number + 1}", "role": "end-user"}
        users.append(requester)
        agent = agents[number % len(agents)]["id"]
        comments = []
        for t in c.turns:
            comments.append({"id": comment_id, "type": "Comment", "author_id": requester["id"] if t.speaker == "customer" else agent,
                             "body": t.text, "plain_body": t.text, "public": True, "created_at": _iso(t.time)})
            comment_id += 1
        score = "unoffered" if c.rating is None else ("good" if c.rating >= 4 else "bad")
        tickets.append({
            "id": first_ticket + number, "external_id": c.id, "subject": c.turns[0].text[:60],
            "description": c.turns[0].text, "status": "solved", "requester_id": requester["id"],
            "assignee_id": agent, "created_at": _iso(c.turns[0].time), "updated_at": _iso(c.turns[-1].time),
            "tags": ["synthetic"], "satisfaction_rating": {"score": score}, "comments": comments,
        })
    return json.dumps({"tickets": tickets, "users": users, "count": len(tickets)}, ensure_ascii=False, indent=1) + "\n"


WRITERS = {"jsonl": as_jsonl, "csv": as_csv, "txt": as_txt, "zendesk": as_zendesk}


def labels_csv(conversations: Sequence[Conversation], where: Optional[Dict[str, Tuple[str, str]]] = None) -> str:
    """request -> true topic, one row a request: conversation_id, file, file_id (the conversation's id in
    that file: a Zendesk ticket's is its ticket id), request (1, 2), topic, kind, text."""
    kinds = {t.name: t.kind for t in TOPICS}
    where = where or {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["conversation_id", "file", "file_id", "request", "topic", "kind", "text"])
    for c in conversations:
        file, file_id = where.get(c.id, ("", c.id))
        for position, (topic, text) in enumerate(c.requests, start=1):
            writer.writerow([c.id, file, file_id, position, topic, kinds[topic], text])
    return out.getvalue()


def write(out: Path, labels: Path, conversations: Sequence[Conversation], formats: Sequence[str] = FORMATS) -> Dict[str, int]:
    """Write `conversations` into folder `out`, dealt in turn to each of `formats`, and their labels to `labels`.

    Returns the number of conversations written per file. `labels` must lie
    outside `out` so that reading the transcripts never reads the answers.
    """
    out, labels = Path(out).resolve(), Path(labels).resolve()
    if labels == out or out in labels.parents:
        raise ValueError(f"the labels file {labels} must be outside the transcripts folder {out}")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown format(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(FORMATS)}")
    shares = {f: list(conversations[i::len(formats)]) for i, f in enumerate(formats)}
    where = {c.id: (FILES[f], str(ZENDESK_FIRST_TICKET + n) if f == "zendesk" else c.id)
             for f, share in shares.items() for n, c in enumerate(share)}
    with replacing_folder(out) as staging:
        for name, share in shares.items():
            if share:
                (staging / FILES[name]).write_text(WRITERS[name](share), encoding="utf-8")
    labels.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(labels, labels_csv(conversations, where))
    return {FILES[name]: len(share) for name, share in shares.items() if share}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="transcripts folder to write (replaced whole)")
    parser.add_argument("--labels", type=Path, help="labels CSV (default: <out>.labels.csv beside the folder)")
    parser.add_argument("--conversations", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--topics", type=int, default=len(TOPICS), help=f"how many of the {len(TOPICS)} topics to use")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, of {', '.join(FORMATS)}")
    args = parser.parse_args(argv)
    labels = args.labels or args.out.with_name(args.out.name + ".labels.csv")
    try:
        conversations = generate(args.conversations, args.seed, args.topics)
        written = write(args.out, labels, conversations, [f.strip() for f in args.formats.split(",") if f.strip()])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, count in written.items():
        print(f"{args.out / name}: {count} conversations")
    print(f"labels: {labels} ({sum(len(c.requests) for c in conversations)} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
