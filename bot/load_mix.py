"""A support day's traffic for the load benchmarks: real questions, long conversations, handoffs, forms, clicks, ratings.

`support_day` plans an open-loop load (`bench_load.Customer`s with their send
times) in which:

- at least a third of the messages are real customer questions the demo was
  not built for: BANKING77's test utterances, read from ``../shared/data``
  (77 kinds of banking question against the demo's 34 intents), so fallbacks,
  answers from the history index and the desk's handoff rules see what a
  deployment sees;
- the rest are the demo's held-out utterances (bot/tests/heldout_nlu.yml,
  not seen in training) and questions of the answer history;
- conversations have several shapes: short questions and thanks, a card
  freeze filled in as a form and rated, a request for a person (the
  customer writes once more while queued, then leaves the queue), a click on
  a suggested item, a thumbs-up on an answer;
- `long_customers` customers are already `long_turns` messages into their
  conversation when the measured run starts (`Customer.history`, sent by
  `bench_load.prewarm` before the clock starts), so conversations past 100
  turns are part of the measured traffic.

A planned message may be a *token* that the driver resolves from the
customer's latest replies (`resolve`): a click on the first suggested item,
a rating button, or leaving the handoff queue. When the replies offer no such
button, the customer types the fallback text instead (counted as
``unresolved`` in the report), as a customer would.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from core.records import read_csv
from core.settings import PROJECT_ROOT

BANKING77_TEST = PROJECT_ROOT.parent / "shared" / "data" / "banking77" / "test.csv"

# Tokens: "<kind>|what the customer types when the replies offer no such button".
CLICK = "<click-suggestion>"
RATE_ANSWER = "<rate-answer>"
RATE_SERVICE = "<rate-service>"
TOKEN_RE = re.compile(r"^(<[a-z-]+>)\|(.*)$", re.S)
HANDOFF_MARK = "in the queue"  # every handoff notice names the customer's place in the queue (bot/handoff/notices.py)
CANCEL_HANDOFF = "/cancel_handoff"  # the queue notice's button


def token(kind: str, otherwise: str) -> str:
    return f"{kind}|{otherwise}"


def banking77_questions(path: Optional[Path] = None) -> List[str]:
    """BANKING77's test utterances (real customers' questions), in file order."""
    path = Path(path or BANKING77_TEST)
    if not path.exists():
        raise SystemExit(f"{path} is missing: the support-day mix reads BANKING77's test split from ../shared/data")
    return [str(row["text"]).strip() for _, row in read_csv(path, required=["text"]) if str(row["text"]).strip()]


@dataclass
class Sources:
    """Where the mix's texts come from."""

    real: List[str]  # BANKING77 test utterances
    heldout: Dict[str, List[str]]  # the demo's held-out utterances by intent
    history: List[str]  # questions of the answer history

    @classmethod
    def load(cls) -> "Sources":
        from bot.bench_load import heldout_examples, history_questions

        return cls(banking77_questions(), heldout_examples(), history_questions())


QUESTION_INTENTS = ("card_arrival", "activate_card", "change_pin", "failed_transfer", "transfer_fees",
                    "card_payment_fee", "top_up_failed", "exchange_rate", "card_declined", "pending_payment",
                    "refund_not_showing", "cash_withdrawal_fee", "direct_debit", "virtual_card", "mobile_wallet")


def shapes(rng: random.Random, src: Sources) -> List[Tuple[float, List[str]]]:
    """(weight, conversation) for one new conversation of each kind."""
    ex = src.heldout
    pick = lambda intent, default="": rng.choice(ex[intent]) if ex.get(intent) else default  # noqa: E731
    real = lambda: rng.choice(src.real)  # noqa: E731
    demo = lambda: pick(rng.choice([i for i in QUESTION_INTENTS if i in ex]) if ex else "greet", "hello")  # noqa: E731
    digits = str(rng.randint(1000, 9999))
    return [
        # A real question or two, thanks, goodbye.
        (3.0, [pick("greet", "hi"), real(), pick("thanks", "thanks"), pick("goodbye", "bye")]),
        (3.0, [real(), real(), token(RATE_ANSWER, pick("thanks", "thanks"))]),
        # The demo's own questions, with a click on a suggested item.
        (2.0, [demo(), token(CLICK, real()), pick("thanks", "thanks")]),
        (1.5, [real(), demo(), token(RATE_ANSWER, demo()), pick("goodbye", "bye")]),
        # A history question answered from the index, rated.
        (1.5, [rng.choice(src.history) if src.history else real(), token(RATE_ANSWER, real())]),
        # The card freeze form, filled in, then the satisfaction rating.
        (1.0, [pick("lost_or_stolen_card", "I lost my card"), "yes please", digits, "yes",
               token(RATE_SERVICE, pick("thanks", "thanks"))]),
        # Asks for a person, writes once more while queued, then leaves the queue (the driver sends it
        # only when a handoff notice came) and asks something else.
        (0.8, [real(), pick("request_human", "can I talk to a person"), real(), CANCEL_HANDOFF, demo()]),
    ]


def conversation(rng: random.Random, src: Sources) -> List[str]:
    weights, convs = zip(*shapes(rng, src))
    return list(rng.choices(convs, weights=weights)[0])


@dataclass
class MixCustomer:
    """A planned customer (same fields as `bench_load.Customer`, plus the prewarm history)."""

    sender: str
    messages: List[str]
    schedule: List[float] = field(default_factory=list)
    history: List[str] = field(default_factory=list)  # sent before the measured run (long conversations)


def fill_schedule(rng: random.Random, next_conversation: Callable[[], List[str]], start: float, until: float,
                  gap: float, jitter: float, recent: Sequence[str] = ()) -> Tuple[List[str], List[float]]:
    """One customer's conversations one after another, a message every `gap` seconds (± `jitter`), until `until`."""
    messages: List[str] = []
    times: List[float] = []
    t = start
    while t < until:
        script = next_conversation()
        for _ in range(20):
            # A customer who types the same words again within a few messages is frustrated (the desk
            # hands them to a person); these simulated customers are not, so no repeats close together.
            plain = [m for m in script if not m.startswith("<")]
            if len(set(plain)) == len(plain) and not set(plain) & set((list(recent) + messages)[-10:]):
                break
            script = next_conversation()
        for text in script:
            if t >= until:
                break
            messages.append(text)
            times.append(t)
            t += gap * rng.uniform(1 - jitter, 1 + jitter)
    return messages, times


def support_day(customers: int, rate: float, duration: float, seed: int, long_customers: int = 10,
                long_turns: int = 100, jitter: float = 0.5, sources: Optional[Sources] = None,
                prefix: str = "day") -> List[MixCustomer]:
    """`customers` customers sending `rate` messages a second in all for `duration` seconds (open loop)."""
    src = sources or Sources.load()
    rng = random.Random(seed)
    gap = customers / rate
    people = []
    for i in range(customers):
        history: List[str] = []
        if i < long_customers:
            # Whole conversations one after another, as the same customer would have had them.
            history = fill_schedule(rng, lambda: conversation(rng, src), 0.0, float(long_turns), 1.0, 0.0)[0]
        messages, times = fill_schedule(rng, lambda: conversation(rng, src), rng.uniform(0, gap), duration, gap,
                                        jitter, history)
        kind = "long" if i < long_customers else "cust"
        people.append(MixCustomer(f"{prefix}-{seed}-{kind}-{i:04d}", messages, times, history))
    return people


def composition(people: Sequence[Any], src: Optional[Sources] = None) -> Dict[str, Any]:
    """What the planned messages are: shares of real questions, tokens, form turns; conversation lengths."""
    src = src or Sources.load()
    real = set(src.real)
    counts: Counter = Counter()
    total = 0
    for p in people:
        for text in p.messages:
            total += 1
            match = TOKEN_RE.match(text)
            if match:
                counts[match.group(1)] += 1
                text = match.group(2)
            if text == CANCEL_HANDOFF:
                counts["leave the handoff queue"] += 1
            elif text in real:
                counts["real (BANKING77 test)"] += 1
    longest = max((len(getattr(p, "history", [])) + len(p.messages) for p in people), default=0)
    return {"messages": total, "kinds": dict(counts),
            "real_share": counts["real (BANKING77 test)"] / max(1, total),
            "longest_conversation": longest,
            "past_100_turns": sum(len(getattr(p, "history", [])) + len(p.messages) > 100 for p in people)}


# --------------------------------------------------------------------- the driver's side
@dataclass
class CustomerState:
    """What one simulated customer has seen: the buttons of its latest replies, whether it is queued."""

    buttons: List[Dict[str, Any]] = field(default_factory=list)
    queued: bool = False
    handoffs: int = 0
    unresolved: int = 0
    resolved: Counter = field(default_factory=Counter)

    def seen(self, replies: List[Dict[str, Any]]) -> None:
        """Take in the bot's replies to one message."""
        buttons = [b for r in replies for b in (r.get("buttons") or []) if isinstance(b, dict)]
        if buttons:
            self.buttons = buttons
        text = " ".join(str(r.get("text") or "") for r in replies)
        if HANDOFF_MARK in text and not self.queued:
            self.queued = True
            self.handoffs += 1
        elif "back with the" in text:  # utter_handoff_cancelled / _returned
            self.queued = False

    def resolve(self, planned: str) -> str:
        """The text the customer actually sends for a planned message."""
        if planned == CANCEL_HANDOFF:
            if self.queued:
                self.queued = False
                self.resolved["leave the handoff queue"] += 1
                return CANCEL_HANDOFF
            self.unresolved += 1
            return "ok"
        match = TOKEN_RE.match(planned)
        if not match:
            return planned
        kind, otherwise = match.groups()
        prefix = {CLICK: "/select_suggestion", RATE_ANSWER: "/rate_answer", RATE_SERVICE: "/rate_service"}[kind]
        for button in self.buttons:
            payload = str(button.get("payload") or "")
            if payload.startswith(prefix):
                if kind == RATE_SERVICE:  # the five buttons: pick 4 or 5
                    payload = prefix + json.dumps({"score": 4 + (len(self.buttons) % 2)}, separators=(",", ":"))
                self.buttons = []
                self.resolved[kind] += 1
                return payload
        self.unresolved += 1
        return otherwise


def state_totals(states: Dict[str, CustomerState]) -> Dict[str, Any]:
    resolved: Counter = Counter()
    for s in states.values():
        resolved.update(s.resolved)
    return {"handoffs": sum(s.handoffs for s in states.values()),
            "handed_over_customers": sum(s.handoffs > 0 for s in states.values()),
            "clicks_and_ratings": dict(resolved),
            "unresolved_tokens": sum(s.unresolved for s in states.values())}
