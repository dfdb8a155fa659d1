"""Load test: simulated customers in multi-turn conversations over REST, ours beside stock Rasa.

    python -m bot.bench_load --rate 50 --customers 150 --duration 60

Open loop: every customer sends its next message on its own schedule (one
every `customers / rate` seconds on average, with jitter), whether or not the
previous one has been answered, so a slow server is not rewarded with a
lighter load. Latency is measured from each message's *scheduled* time to
the end of its HTTP response, so time spent waiting behind earlier messages
counts. A message is an error when the request fails, answers non-200,
takes longer than `--timeout`, or answers with no bot message at all.

With ``--baseline REV`` (a git revision, e.g. the commit before a change) the
same load runs against that revision of this project too, checked out in a
temporary worktree and driven by its own copy of this benchmark, alternating
with ours for ``--rounds`` rounds, so a before/after table shares one machine
and one run:

    python -m bot.bench_load --rate 50 --customers 150 --duration 60 --systems ours --baseline 7b3931e --rounds 2

With ``--promote-at SECONDS`` a promotion happens in the middle of the run
(ours only): the servers start from a release in their own model folder, and
at that second a second release is published whose Rasa archive is the same
model with every response prefixed by ``--marker`` (`repack_with_marker`), so
an answer says which model gave it. The report then gives errors and
p50/p95/p99 before the promotion, in the switch window (from the publish to
one second after the switch) and after it, the time from the publish to the
switch (from the servers' ``/health``), and how many answers to messages sent
after the switch still came from the old model (must be 0):

    python -m bot.bench_load --rate 30 --customers 100 --duration 60 --systems ours --promote-at 30

Both systems run on the same machine in the same run, one after the other,
each with a fresh action server (this project's actions) and a fresh SQLite
tracker store (ours: the project's caching store; stock: Rasa's own SQL
store), started by the same launcher, so both get one BLAS/OpenMP thread:
- ours: the demo assistant (config.yml; the model from --model or trained),
  through this project's channels;
- stock: Rasa 3.6's default pipeline and policies (DIET, ResponseSelector,
  Memoization, Rule, UnexpecTED, TED with 100 epochs) on the same domain,
  NLU data and stories, through Rasa's built-in REST channel.

With ``--mix support-day`` the traffic is a support day's (bot/load_mix.py):
at least a third real customer questions (BANKING77's test split from
../shared/data), conversations already 100 turns old, handoffs, the card
freeze form, suggestion clicks and ratings. ``--rates 50,80,100,120`` runs
each rate on freshly started servers, and ``--systems`` may then also name
``ours-fp32`` (ours with bfloat16 off), so one invocation gives the table:

    python -m bot.bench_load --systems ours,ours-fp32,stock --mix support-day --rates 50,80,100,120 --customers 300

By default the conversations are built from held-out utterances (bot/tests/heldout_nlu.yml)
and from questions of the answer history, so the server has not seen them
word for word in training. Per-stage latency (NLU, retrieval, actions) comes
from the servers' /metrics where the running server has it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from bot.load_mix import fill_schedule
from bot.serve import Assistant, prepare
from core.encoder import cpu_description
from core.processes import project_env
from core.settings import PROJECT_ROOT, get_settings

def stock_config() -> Dict[str, Any]:
    """Rasa 3.6's default assistant: the config `rasa init` writes and Rasa fills missing keys from
    (its own ``default_config.yml``: the stock DIET pipeline, ResponseSelector, policies included)."""
    import rasa.engine.recipes.default_recipe as recipe

    config = yaml.safe_load((Path(recipe.__file__).parent / "config_files" / "default_config.yml").read_text())
    config["assistant_id"] = "stock-rasa"
    return config


def free_port() -> int:
    """A TCP port nobody listens on right now (the e2e tests' servers take theirs here too)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Intents whose answer is a plain answer (no handoff, no form), for the question turns.
QUESTION_INTENTS = [
    "card_arrival", "activate_card", "card_declined", "change_pin", "contactless_not_working",
    "card_payment_fee", "cash_withdrawal_fee", "exchange_rate", "transfer_fees", "failed_transfer",
    "pending_payment", "refund_not_showing", "top_up_methods", "top_up_failed", "direct_debit",
    "statement_request", "change_personal_details", "verify_identity", "virtual_card", "mobile_wallet",
    "atm_kept_card",
]


# --------------------------------------------------------------------- conversations
def heldout_examples(path: Path = PROJECT_ROOT / "bot" / "tests" / "heldout_nlu.yml") -> Dict[str, List[str]]:
    """intent -> held-out utterances (annotations like [x](entity) reduced to their text)."""
    import re

    data = yaml.safe_load(path.read_text())
    examples: Dict[str, List[str]] = {}
    for block in data.get("nlu", []):
        if "intent" not in block:
            continue
        lines = [line.strip()[2:].strip() for line in str(block.get("examples", "")).splitlines() if line.strip().startswith("- ")]
        examples[block["intent"]] = [re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", line) for line in lines if line]
    return examples


def history_questions(path: Path = PROJECT_ROOT / "bot" / "history" / "qa.jsonl") -> List[str]:
    """Long-tail questions from the answer history, lower-cased and without the question mark."""
    questions = []
    for line in path.read_text().splitlines():
        try:
            questions.append(json.loads(line)["question"].rstrip("?").lower())
        except (ValueError, KeyError):
            continue
    return questions


def conversation_scripts(rng: random.Random, n: int) -> List[List[str]]:
    """`n` multi-turn conversations: greetings, intent questions, long-tail questions, a form, thanks."""
    ex = heldout_examples()
    history = history_questions()
    pick = lambda intent: rng.choice(ex[intent])  # noqa: E731
    question = lambda: pick(rng.choice([i for i in QUESTION_INTENTS if i in ex]))  # noqa: E731
    shapes = [
        lambda: [pick("greet"), question(), pick("thanks"), pick("goodbye")],
        lambda: [question(), question(), pick("goodbye")],
        lambda: [pick("greet"), rng.choice(history), pick("thanks")],
        lambda: [rng.choice(history), question(), pick("thanks"), pick("goodbye")],
        lambda: [pick("lost_or_stolen_card"), "yes please", str(rng.randint(1000, 9999)), "yes", pick("thanks")],
        lambda: [pick("greet"), question(), rng.choice(history), pick("goodbye")],
    ]
    return [rng.choice(shapes)() for _ in range(n)]


REFUSED = "refused (503, send again)"
BURST_PREFIX = "burst-"


@dataclass
class Customer:
    sender: str
    messages: List[str]
    schedule: List[float] = field(default_factory=list)


def plan(customers: int, rate: float, duration: float, seed: int, jitter: float = 0.5) -> List[Customer]:
    """Every customer's messages and their scheduled send times (seconds from the start)."""
    rng = random.Random(seed)
    gap = customers / rate  # each customer's mean time between messages
    people = []
    for i in range(customers):
        messages, times = fill_schedule(rng, lambda: conversation_scripts(rng, 1)[0], rng.uniform(0, gap), duration,
                                        gap, jitter)
        people.append(Customer(f"load-{seed}-{i:04d}", messages, times))
    return people


def burst_plan(rate: float, burst_rate: float, burst_seconds: float, every: float, duration: float, seed: int,
               first_at: Optional[float] = None, per_customer: int = 5, gap: float = 2.0) -> List[Customer]:
    """Customers who arrive only in bursts: `burst_rate - rate` extra messages a second for `burst_seconds` every `every` seconds.

    Each burst customer sends a short conversation (`per_customer` messages, one
    every `gap` seconds on average, within the per-customer rate limit),
    starting at a random moment of the burst. The first burst comes at
    `first_at` (default: `every` / 2).
    """
    rng = random.Random(seed + 7919)
    extra = max(0.0, burst_rate - rate)
    people: List[Customer] = []
    start = every / 2 if first_at is None else first_at
    n = 0
    while start < duration:
        # Customers until their messages inside the burst add up to `extra` a second.
        wanted, planned = int(round(extra * burst_seconds)), 0
        while planned < wanted:
            t = start + rng.uniform(0, burst_seconds)
            messages, times = [], []
            while t < start + burst_seconds and len(messages) < per_customer:
                script = conversation_scripts(rng, 1)[0]
                for text in script:
                    if t >= start + burst_seconds or len(messages) >= per_customer:
                        break
                    messages.append(text)
                    times.append(t)
                    t += gap * rng.uniform(0.5, 1.5)
            messages, times = messages[:wanted - planned], times[:wanted - planned]
            planned += len(messages)
            people.append(Customer(f"{BURST_PREFIX}{seed}-{n:05d}", messages, times))
            n += 1
        start += every
    return people


def burst_windows(burst_seconds: float, every: float, duration: float, first_at: Optional[float] = None):
    start = every / 2 if first_at is None else first_at
    windows = []
    while start < duration:
        windows.append((start, start + burst_seconds))
        start += every
    return windows


def burst_summary(results: List[Result], windows: List[Tuple[float, float]], settle_s: float = 5.0) -> Dict[str, Any]:
    """Steady traffic around the bursts: its p95 before them, during each, and how soon after each it recovers.

    Steady messages are those of the steady customers (not `BURST_PREFIX`).
    The reference is the p95 of steady messages scheduled outside the bursts
    and the 30 seconds after each; a second after a burst is recovered when
    the p95 of the steady messages scheduled in it is at most
    max(2 x reference, 100 ms). Recovery time: from the burst's end to the
    start of the first second from which every second stays recovered until
    30 s after the burst (0 when none was above).
    """
    steady = [r for r in results if not r.message.startswith(BURST_PREFIX)]

    def near(r: Result) -> bool:
        return any(a <= r.at < b + 30 for a, b in windows)

    reference = [r.latency_ms for r in steady if not near(r)] or [r.latency_ms for r in steady] or [0.0]
    ref_p95 = float(np.percentile(reference, 95))
    threshold = max(2 * ref_p95, 100.0)
    by_second: Dict[int, List[float]] = {}
    for r in steady:
        by_second.setdefault(int(math.floor(r.at)), []).append(r.latency_ms)
    p95_by_second = {sec: float(np.percentile(v, 95)) for sec, v in by_second.items()}
    bursts = []
    for a, b in windows:
        inside = [r for r in results if a <= r.at < b]
        after = [sec for sec in range(int(math.ceil(b)), int(b) + 30) if sec in p95_by_second]
        late = [sec for sec in after if p95_by_second[sec] > threshold]
        recovery = (max(late) + 1 - b) if late else 0.0
        steady_in = [r.latency_ms for r in steady if a <= r.at < b] or [0.0]
        bursts.append({
            "start": a, "end": b, "messages": len(inside),
            "errors": sum((not r.ok) and r.error != REFUSED for r in inside),
            "refused": sum(r.error == REFUSED for r in inside),
            "steady_p95_during": float(np.percentile(steady_in, 95)),
            "recovery_s": max(0.0, recovery),
            "p95_after": {sec - int(b): round(p95_by_second[sec]) for sec in after[:10]},
        })
    return {"reference_p95": ref_p95, "threshold_ms": threshold, "bursts": bursts,
            "settled_within": all(x["recovery_s"] <= settle_s for x in bursts)}


def burst_table(row: Dict[str, Any]) -> str:
    b = row["burst"]
    lines = [
        f"Bursts, {row['system']}: steady p95 outside the bursts {b['reference_p95']:.0f} ms; a second after a burst "
        f"counts as recovered at steady p95 <= {b['threshold_ms']:.0f} ms.",
        "",
        "| burst | messages | errors | refused (503) | steady p95 during, ms | recovered after, s | steady p95 in the 10 s after, ms |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for x in b["bursts"]:
        lines.append(f"| {x['start']:.0f}-{x['end']:.0f} s | {x['messages']} | {x['errors']} | {x['refused']} | "
                     f"{x['steady_p95_during']:.0f} | {x['recovery_s']:.0f} | "
                     + " ".join(str(v) for v in x["p95_after"].values()) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------- the client
@dataclass
class Result:
    latency_ms: float
    ok: bool
    error: str = ""
    message: str = ""  # "sender: text", for the report
    at: float = 0.0  # scheduled send time, seconds from the start
    sent: float = 0.0  # wall-clock time (time.time()) the request was sent
    texts: List[str] = field(default_factory=list)  # the bot's answers
    # Where the latency went, client side: how late the driver itself started the request (its own
    # loop behind), and how long a new connection took to open (the kernel completes the handshake
    # while the connection waits in the listen queue, so this grows only when that queue is full).
    # What is left is the server's: accepting and reading the request, the admission gate, the turn.
    send_lag_ms: float = 0.0
    connect_ms: float = 0.0
    handler_ms: float = float("nan")  # the server's own time in its handler (its Server-Timing header), if given


def error_name(exc: BaseException) -> str:
    """A failed request's error for the report: its type, and the OS error's name where it has one
    ("ClientOSError ECONNRESET"), so that a reset, a refused connection and a full table of open
    files are told apart."""
    import errno

    code = getattr(exc, "errno", None)
    return f"{type(exc).__name__} {errno.errorcode.get(code, code)}" if code else type(exc).__name__


def server_timing(header: str, name: str = "handler") -> float:
    """The ``dur`` (ms) of metric `name` in a W3C Server-Timing header; NaN when absent or malformed."""
    for metric in header.split(","):
        parts = [part.strip() for part in metric.split(";")]
        if parts[0] != name:
            continue
        for part in parts[1:]:
            key, _, value = part.partition("=")
            if key.strip() == "dur":
                try:
                    return float(value)
                except ValueError:
                    return float("nan")
    return float("nan")


def connection_timing():
    """An aiohttp trace that writes how long each request waited for a new connection into the
    request's ``trace_request_ctx`` dict (``connect``, ms; 0 for a reused one). The kernel answers
    the handshake for a connection still waiting in the server's listen queue, so that wait shows
    after the connection (before the handler); only a full queue, whose handshakes are dropped and
    retried, shows here."""
    import aiohttp

    async def queued(_session, ctx, _params) -> None:
        ctx.connect_began = time.perf_counter()  # ctx: aiohttp's own per-request trace context

    async def got(_session, ctx, _params) -> None:
        if isinstance(ctx.trace_request_ctx, dict):
            ctx.trace_request_ctx["connect"] = (time.perf_counter() - ctx.connect_began) * 1000

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(queued)
    trace.on_connection_create_end.append(got)
    return trace


async def drive(url: str, people: List[Customer], timeout: float, headers: Dict[str, str],
                at_second: Optional[Tuple[float, Callable[[], None]]] = None,
                on_result: Optional[Callable[[Result], None]] = None, keep_results: bool = True) -> Dict[str, Any]:
    """Send every planned message at its time; collect latency from the scheduled time.

    Each customer is one task that sends its messages at their scheduled
    times without waiting for the answers (open loop); a planned token of the
    support-day mix (`bot.load_mix`) is resolved from the replies that
    customer has had by then. `at_second` = (s, fn): call `fn()` (on a
    thread) `s` seconds into the run (the promotion). `on_result` sees every
    result as it comes (the soak's per-minute samples); with `keep_results`
    False only the running totals are kept, for runs of hours.
    """
    import aiohttp

    from bot.load_mix import CustomerState, state_totals

    results: List[Result] = []
    totals = _Totals()
    states: Dict[str, CustomerState] = {}
    connector = aiohttp.TCPConnector(limit=0)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout,
                                     trace_configs=[connection_timing()]) as session:
        start = loop.time() + 1.0

        def record(result: Result) -> None:
            totals.add(result)
            if keep_results:
                results.append(result)
            if on_result is not None:
                on_result(result)

        async def one(sender: str, text: str, at: float, state: CustomerState) -> None:
            scheduled = start + at
            label = f"{sender}: {text}"
            sent = time.time()
            timing = {"lag": (loop.time() - scheduled) * 1000, "connect": 0.0}

            def result(latency: float, ok: bool, error: str = "", texts: Optional[List[str]] = None) -> Result:
                return Result(latency, ok, error, label, at, sent, texts or [], send_lag_ms=timing["lag"],
                              connect_ms=timing["connect"], handler_ms=timing.get("handler", float("nan")))

            try:
                async with session.post(url, json={"sender": sender, "message": text}, headers=headers,
                                        trace_request_ctx=timing) as response:
                    body = await response.read()
                    latency = (loop.time() - scheduled) * 1000
                    timing["handler"] = server_timing(response.headers.get("Server-Timing", ""))
                    if response.status == 503 and b"again" in body:  # the admission gate's polite refusal
                        record(result(latency, False, REFUSED))
                        return
                    if response.status != 200:
                        record(result(latency, False, f"HTTP {response.status}"))
                        return
                    replies = json.loads(body)
                    if not replies:
                        record(result(latency, False, "no reply"))
                        return
                    state.seen(replies)
                    record(result(latency, True,
                                  texts=[str(r.get("text") or "") for r in replies] if keep_results else []))
            except asyncio.TimeoutError:
                record(result((loop.time() - scheduled) * 1000, False, "timeout"))
            except Exception as exc:  # connection refused, reset, bad JSON
                record(result((loop.time() - scheduled) * 1000, False, error_name(exc)))

        async def customer(person: Customer) -> None:
            state = states.setdefault(person.sender, CustomerState())
            pending: set = set()
            for text, at in zip(person.messages, person.schedule):
                await asyncio.sleep(max(0.0, start + at - loop.time()))
                task = asyncio.ensure_future(one(person.sender, state.resolve(text), at, state))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*pending)

        async def event(second: float, fn: Callable[[], None]) -> None:
            await asyncio.sleep(max(0.0, start + second - loop.time()))
            await loop.run_in_executor(None, fn)

        tasks = [customer(p) for p in people]
        if at_second is not None:
            tasks.append(event(*at_second))
        began = time.perf_counter()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - began - 1.0
    summary = summarise(results, wall) if keep_results else totals.summary(wall)
    summary["conversation"] = state_totals(states)
    summary["results"] = results
    return summary


def outcome(r: Result) -> str:
    """"answered", "refused" (the admission gate's polite 503, not an error) or "errors"."""
    return "answered" if r.ok else "refused" if r.error == REFUSED else "errors"


class _Totals:
    """Running counts and a latency sample for runs too long to keep every result."""

    def __init__(self) -> None:
        self.latencies: List[float] = []
        self.errors: Dict[str, int] = {}
        self.refused = 0
        self.answered = 0

    def add(self, r: Result) -> None:
        self.latencies.append(r.latency_ms)
        kind = outcome(r)
        if kind == "answered":
            self.answered += 1
        elif kind == "refused":
            self.refused += 1
        else:
            self.errors[r.error] = self.errors.get(r.error, 0) + 1

    def summary(self, wall: float) -> Dict[str, Any]:
        lat = np.array(self.latencies or [0.0])
        # refused: answered at once with "send it again in a few seconds" (HTTP 503), not an error
        return {"messages": len(self.latencies), "answered": self.answered, "errors": sum(self.errors.values()),
                "refused": self.refused, "error_kinds": self.errors,
                "throughput": self.answered / wall if wall > 0 else 0.0,
                "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                "p99": float(np.percentile(lat, 99)), "max": float(lat.max()), "wall_s": wall,
                "timeline_p95": {}, "failed_examples": [], "per_message": []}


async def prewarm(url: str, people: List[Any], timeout: float, concurrency: int = 4) -> Dict[str, Any]:
    """Send each customer's `history` (long conversations) before the measured run, one message at a time per customer.

    Closed loop, `concurrency` customers at once; returns the count, errors
    and seconds taken. Tokens are resolved as in `drive`.
    """
    import aiohttp

    from bot.load_mix import CustomerState

    began, errors, sent = time.perf_counter(), 0, 0
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async def one(person: Any) -> None:
            nonlocal errors, sent
            state = CustomerState()
            async with gate:
                for text in getattr(person, "history", []):
                    try:
                        async with session.post(url, json={"sender": person.sender, "message": state.resolve(text)}) as r:
                            body = await r.read()
                            if r.status == 200:
                                state.seen(json.loads(body) or [])
                            else:
                                errors += 1
                    except Exception:
                        errors += 1
                    sent += 1

        await asyncio.gather(*(one(p) for p in people if getattr(p, "history", None)))
    return {"messages": sent, "errors": errors, "seconds": time.perf_counter() - began}


def summarise(results: List[Result], wall: float) -> Dict[str, Any]:
    """`_Totals` of the results, with each second's p95, the first failures and every message's timing."""
    totals = _Totals()
    for r in results:
        totals.add(r)
    timeline: Dict[int, List[float]] = {}
    for r in results:
        timeline.setdefault(int(r.at), []).append(r.latency_ms)
    return {
        **totals.summary(wall),
        # p95 latency of the messages scheduled in each second: shows whether the tail is steady or a stall
        "timeline_p95": {s: float(np.percentile(v, 95)) for s, v in sorted(timeline.items())},
        "failed_examples": [f"{r.error}: {r.message}" for r in results if not r.ok and r.message][:10],
        # Every message: scheduled second, latency, "sender: text" (for looking into the tail).
        "per_message": [(round(r.at, 3), round(r.latency_ms, 1), r.message) for r in results],
        # How much of the latency the driver's own lateness and the wait for a connection explain.
        "client": client_shares(results),
    }


def client_shares(results: List[Result]) -> Dict[str, float]:
    """p50/p95/max (ms) of the driver's send lag, the wait for a connection, the rest, and, where the
    server sent Server-Timing, its handler's time and the wait before the handler: a tail that the
    driver or the way to the handler explains is not the assistant's turn."""
    if not results:
        return {}
    lag = np.array([r.send_lag_ms for r in results])
    connect = np.array([r.connect_ms for r in results])
    latency = np.array([r.latency_ms for r in results])
    handler = np.array([r.handler_ms for r in results])
    rest = latency - lag - connect
    shares = [("send_lag", lag), ("connect", connect), ("after_connect", rest)]
    timed = ~np.isnan(handler)
    if timed.any():  # the server said how long its handler took: the rest was spent reaching it
        shares += [("handler", handler[timed]), ("before_handler", rest[timed] - handler[timed])]
    out: Dict[str, float] = {}
    for name, values in shares:
        out[f"{name}_p50"] = float(np.percentile(values, 50))
        out[f"{name}_p95"] = float(np.percentile(values, 95))
        out[f"{name}_max"] = float(values.max())
    return out


# --------------------------------------------------------------------- servers
def cpu_seconds(pids: List[int]) -> float:
    """User+system CPU seconds used so far by these processes (Linux /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def child_map() -> Dict[int, List[int]]:
    """parent pid -> its children's pids, for every process now (Linux /proc)."""
    children: Dict[int, List[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def child_pids(root: int, children: Optional[Dict[int, List[int]]] = None) -> List[int]:
    """`root` and its descendants (`children`: a `child_map` to reuse for several roots)."""
    children = child_map() if children is None else children
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def scrape(url: str, headers: Dict[str, str]) -> str:
    """The server's /metrics text, or '' when it has none."""
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url}/metrics", headers=headers), timeout=5) as r:
            return r.read().decode()
    except Exception:
        return ""


def _seconds_samples(text: str) -> Iterator[Tuple[str, str, str, float]]:
    """(stage, kind, labels, value) of each `<stage>_seconds_<kind>{labels} value` sample of a
    Prometheus /metrics text (kind: bucket, sum, count); comments and unreadable values skipped."""
    for line in text.splitlines():
        if line.startswith("#") or "_seconds_" not in line:
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{")[0]
        stage, _, kind = name.rpartition("_seconds_")
        try:
            yield stage, kind, name_labels[len(name):], float(value)
        except ValueError:
            continue


def scrape_stages(text: str) -> Dict[str, float]:
    """Mean milliseconds per stage from a server's Prometheus histograms (the /metrics text)."""
    sums: Dict[str, float] = {}
    counts: Dict[str, float] = {}
    for stage, kind, labels, value in _seconds_samples(text):
        key = stage + labels.replace('le="+Inf"', "")
        if kind == "sum":
            sums[key] = sums.get(key, 0.0) + value
        elif kind == "count":
            counts[key] = counts.get(key, 0.0) + value
    return {k: 1000 * sums[k] / counts[k] for k in sums if counts.get(k)}


# The parse-latency targets (issue 15: p50 at most 5 ms, p99 at most 10 ms) are bucket bounds of
# core.metrics.BUCKETS, so the share of a stage's observations within each is exact.
WITHIN_SECONDS = (0.005, 0.01)
MODEL_STAGES = ("assistant_model", "assistant_nlu", "assistant_retrieval")


def scrape_within(text: str, stages: Sequence[str] = MODEL_STAGES,
                  limits: Sequence[float] = WITHIN_SECONDS) -> Dict[str, Dict[float, float]]:
    """Share of each stage's observations within each of `limits` (seconds), from its histogram's
    cumulative buckets on /metrics; a stage with no observations is left out."""
    buckets: Dict[str, Dict[float, float]] = {}
    counts: Dict[str, float] = {}
    for stage, kind, labels, value in _seconds_samples(text):
        if stage not in stages:
            continue
        if kind == "count":
            counts[stage] = value
        elif kind == "bucket" and 'le="' in labels:
            bound = labels.split('le="', 1)[1].split('"', 1)[0]
            try:
                if bound != "+Inf":
                    buckets.setdefault(stage, {})[float(bound)] = value
            except ValueError:
                continue
    return {stage: {limit: buckets.get(stage, {}).get(limit, float("nan")) / counts[stage] for limit in limits}
            for stage in stages if counts.get(stage)}


def within_line(row: Dict[str, Any]) -> str:
    """'Within 5 / 10 ms, <system>: assistant_model 12 % / 95 %, ...' for a row with `within`, else ''."""
    if not row.get("within"):
        return ""
    limits = " / ".join(f"{1000 * limit:g}" for limit in WITHIN_SECONDS)
    parts = [f"{stage} " + " / ".join(f"{100 * share:.0f} %" for share in shares.values())
             for stage, shares in row["within"].items()]
    return f"Share within {limits} ms, {row['system']} (from /metrics): " + ", ".join(parts)


def train_stock(workdir: Path, epochs: Optional[int]) -> Path:
    """Train the stock Rasa model on the same domain, NLU data and stories."""
    config = stock_config()
    if epochs:
        for part in config["pipeline"] + config["policies"]:
            if "epochs" in part:
                part["epochs"] = epochs
    path = workdir / "stock_config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    out = workdir / "stock_models"
    rasa = str(Path(sys.executable).with_name("rasa"))
    print("==> training the stock Rasa model (DIET, ResponseSelector, TED)", flush=True)
    subprocess.run([rasa, "train", "--config", str(path), "--domain", "bot/domain", "--data", "bot/data",
                    "--out", str(out), "--quiet"], cwd=PROJECT_ROOT, env=project_env(), check=True)
    return sorted(out.glob("*.tar.gz"))[-1]


def _stock_assistant_class():
    class StockAssistant(Assistant):
        """The launcher, with Rasa's own SQL tracker store instead of this project's caching one."""

        def endpoints_file(self):
            path = super().endpoints_file()
            endpoints = yaml.safe_load(path.read_text())
            endpoints["tracker_store"]["type"] = "SQL"
            path.write_text(yaml.safe_dump(endpoints))
            return path

    return StockAssistant


# --------------------------------------------------------------------- a promotion in the middle
def _mark_responses(responses: Dict[str, Any], marker: str) -> None:
    for variations in responses.values():
        for variation in variations or []:
            if isinstance(variation, dict) and variation.get("text"):
                variation["text"] = marker + variation["text"]


def repack_with_marker(source: Path, target: Path, marker: str) -> Path:
    """A copy of the Rasa archive `source` at `target` whose every response text starts with `marker`.

    The same trained graph, so it loads and answers like `source`, but each
    answer says which of the two archives gave it (the domain is in the
    archive twice: metadata.json, which the server's domain comes from, and
    the domain provider's domain.yml). Its model id is new.
    """
    import io
    import tarfile
    import uuid

    with tarfile.open(source, "r:gz") as archive, tarfile.open(target, "w:gz") as out:
        for member in archive.getmembers():
            data = archive.extractfile(member).read() if member.isfile() else None
            if data is not None and member.name.endswith("metadata.json"):
                metadata = json.loads(data)
                _mark_responses(metadata["domain"].get("responses") or {}, marker)
                metadata["model_id"] = uuid.uuid4().hex
                data = json.dumps(metadata).encode()
            elif data is not None and member.name.endswith("domain_provider/domain.yml"):
                domain = yaml.safe_load(data)
                _mark_responses(domain.get("responses") or {}, marker)
                data = yaml.safe_dump(domain, allow_unicode=True, sort_keys=False).encode()
            if data is not None:
                member.size = len(data)
                out.addfile(member, io.BytesIO(data))
            else:
                out.addfile(member)
    return target


def _percentiles(results: List[Result]) -> Dict[str, Any]:
    latencies = [r.latency_ms for r in results] or [0.0]
    return {"messages": len(results), "errors": sum(not r.ok for r in results),
            **{f"p{q}": float(np.percentile(latencies, q)) for q in (50, 95, 99)}}


def hot_swap_summary(results: List[Result], published: float, switched: float, marker: str) -> Dict[str, Any]:
    """Latency and errors before the publish, in the switch window, after it; answers from the old model after it.

    The switch window runs from the publish (`published`, wall-clock) to a
    second after the switch (`switched`); a message belongs where it was
    sent. An answer to a message sent after the switch that does not start
    with `marker` came from the old model.
    """
    window_end = switched + 1.0
    before = [r for r in results if r.sent < published]
    during = [r for r in results if published <= r.sent < window_end]
    after = [r for r in results if r.sent >= window_end]
    late = [r for r in results if r.sent >= switched and r.ok]
    old = [r for r in late if any(t and not t.startswith(marker) for t in r.texts)]
    by_second: Dict[int, List[float]] = {}
    for r in results:
        by_second.setdefault(int(r.sent - published), []).append(r.latency_ms)
    return {
        "switch_seconds": switched - published,
        "before": _percentiles(before), "during": _percentiles(during), "after": _percentiles(after),
        "answered_after_switch": len(late), "old_answers_after_switch": len(old),
        "old_examples": [f"{r.message} -> {r.texts}" for r in old[:5]],
        # p99 of the messages sent in each second, from 5 s before the publish to 10 s after
        "p99_by_second": {s: float(np.percentile(v, 99)) for s, v in sorted(by_second.items()) if -5 <= s <= 10},
    }


def health(url: str) -> Dict[str, Any]:
    """The /health body of a server (its ``release`` part says which release it serves)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:  # 503 still carries the body
        return json.loads(exc.read())


def hot_swap_table(swap: Dict[str, Any]) -> str:
    """The report's hot-swap section."""
    lines = [
        f"Promotion published at second {swap['promote_at']:.0f}; the Rasa server switched "
        f"{swap['switch_seconds']:.1f}s later (poll {swap['poll_seconds']}s + load), the action server "
        f"{swap['actions_switch_seconds']:.1f}s later; versions on /health: Rasa {swap['rasa_version']}, "
        f"actions {swap['actions_version']}.",
        "",
        "| phase | messages | errors | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for phase in ("before", "during", "after"):
        row = swap[phase]
        lines.append(f"| {phase} | {row['messages']} | {row['errors']} | {row['p50']:.0f} | {row['p95']:.0f} | {row['p99']:.0f} |")
    lines += ["", f"Answers to messages sent after the switch: {swap['answered_after_switch']}, of which from the old "
              f"model: {swap['old_answers_after_switch']}.",
              "p99 ms by second from the publish: " + ", ".join(f"{s:+d}s {v:.0f}" for s, v in swap["p99_by_second"].items())]
    return "\n".join(lines)


def bench_env(history: bool, precision: Optional[str] = None, **extra: str) -> Dict[str, str]:
    """The servers' environment in every load benchmark (this one, bench_soak, bench_replicas), plus `extra`.

    Open REST (demo mode, no API token) and no per-address ingress limit:
    every synthetic customer comes from this one address, which the limit
    would rightly throttle. With `history` (long conversations sent before
    the clock starts, as fast as the server answers, far above one
    customer's limit of 30 a minute; the measured traffic stays below it)
    the per-customer limit is off. `precision`: our models' serving precision.
    """
    env = project_env(ASSISTANT_ENV="demo", ASSISTANT_INGRESS_PER_ADDRESS_PER_MINUTE="0", **extra)
    env.pop("RASA_API_TOKEN", None)
    if precision is not None:
        env["ASSISTANT_INFERENCE_PRECISION"] = precision
    if history:
        env["ASSISTANT_RATE_LIMIT_PER_MINUTE"] = "0"
    return env


def run_system(name: str, model: Path, credentials: Path, args, people: List[Customer], workdir: Path,
               round_no: int = 1) -> Dict[str, Any]:
    """Start one system, warm it, drive the load, scrape stages, stop it (fresh databases for every round).

    With ``args.promote_at`` the servers serve from their own model folder,
    and a release with the marked archive is published in the middle.
    """
    StockAssistant = _stock_assistant_class()

    run_dir = workdir / (name if round_no == 1 else f"{name}-{round_no}")
    run_dir.mkdir(parents=True, exist_ok=True)
    has_history = any(getattr(p, "history", None) for p in people)
    env = bench_env(
        has_history,
        # bf16 where the CPU has it (auto), or fp32 as on a CPU without it; stock Rasa has no such switch
        None if name == "stock-rasa" else getattr(args, "precision", None) or "auto",
        ASSISTANT_DATABASE_URL=f"sqlite:///{run_dir / 'assistant.db'}",
        ASSISTANT_TRACKER_DB=str(run_dir / "tracker.db"),
    )
    promote = getattr(args, "promote_at", None) is not None and name == "ours"
    if promote:
        from core import releases

        model_dir = run_dir / "models"
        model_dir.mkdir(exist_ok=True)
        model = Path(shutil.copy(model, model_dir / "served.tar.gz"))
        marked = repack_with_marker(model, model_dir / "promoted.tar.gz", args.marker)
        releases.publish(parts={}, rasa_model=model, model_dir=model_dir)
        env.update(ASSISTANT_MODEL_DIR=str(model_dir), ASSISTANT_MODEL_POLL_SECONDS=str(args.poll_seconds))
    servers_class = StockAssistant if name == "stock-rasa" else Assistant
    servers = servers_class(model, env, free_port(), free_port(), run_dir, credentials, log_dir=run_dir)
    print(f"==> {name}: starting the servers", flush=True)
    servers.start(timeout=600)
    url = f"{servers.url}/webhooks/rest/webhook"
    try:
        warm = plan(10, 10, 3, seed=args.seed + 1000)
        asyncio.run(drive(url, warm, args.timeout, {}))
        if has_history:
            before = asyncio.run(prewarm(url, people, args.timeout))
            print(f"==> {name}: {before['messages']} messages of history for the long conversations in "
                  f"{before['seconds']:.0f} s ({before['errors']} errors)", flush=True)
        pids = [pid for p in servers.processes for pid in child_pids(p.pid)]
        rasa_pids = child_pids(servers.processes[-1].pid)
        cpu0, rasa0 = cpu_seconds(pids), cpu_seconds(rasa_pids)
        print(f"==> {name}: {sum(len(p.messages) for p in people)} messages from {len(people)} customers "
              f"at {args.rate}/s for {args.duration}s", flush=True)
        published: Dict[str, float] = {}
        event = None
        if promote:
            def publish_now() -> None:
                published["at"] = time.time()
                published["version"] = releases.publish(parts={}, rasa_model=marked, model_dir=model_dir).version

            event = (args.promote_at, publish_now)
        summary = asyncio.run(drive(url, people, args.timeout, {}, at_second=event))
        results = summary.pop("results")
        if promote:
            rasa, actions = health(servers.url)["release"], health(servers.action_url)["release"]
            swap = hot_swap_summary(results, published["at"], float(rasa["switched_at"] or "nan"), args.marker)
            swap.update(promote_at=args.promote_at, poll_seconds=args.poll_seconds, published=published["version"],
                        rasa_version=rasa["version"], rasa_state=rasa["state"], actions_version=actions["version"],
                        actions_switch_seconds=float(actions["switched_at"] or "nan") - published["at"])
            summary["hot_swap"] = swap
        if getattr(args, "burst_rate", None):
            summary["burst"] = burst_summary(
                results, burst_windows(args.burst_seconds, args.burst_every, args.duration))
        summary["cpu_ms_per_msg"] = 1000 * (cpu_seconds(pids) - cpu0) / max(1, summary["messages"])
        summary["rasa_cpu_ms_per_msg"] = 1000 * (cpu_seconds(rasa_pids) - rasa0) / max(1, summary["messages"])
        scraped = {"rasa": scrape(servers.url, {}), "actions": scrape(f"http://localhost:{servers.action_port}", {})}
        summary["stages"] = {**scrape_stages(scraped["rasa"]), **{
            # Both servers time their garbage collector (same metric): the action server's under its own name.
            (f"actions {k}" if k.startswith("assistant_gc_pause") else k): v
            for k, v in scrape_stages(scraped["actions"]).items()}}
        summary["gc"] = {server: gc_pauses(text) for server, text in scraped.items()}
        summary["within"] = scrape_within(scraped["rasa"])
        summary["metrics"] = scraped  # the raw text, saved beside the report
        summary["load_avg"] = os.getloadavg()[0]
    finally:
        servers.stop()
    summary["system"] = name
    return summary


def baseline_arguments(args, model: Optional[Path], out: Path) -> List[str]:
    """The options of this run that the baseline's own benchmark needs to offer the same load to the same model.

    Options left at their defaults are not passed, so that a revision older
    than an option still runs (its benchmark did the default then).
    """
    command = ["--systems", "ours", "--rate", str(args.rate), "--customers", str(args.customers),
               "--duration", str(args.duration), "--timeout", str(args.timeout), "--seed", str(args.seed),
               "--out", str(out)]
    if model is not None:
        # The same archive (absolute: the baseline runs in its own tree), so a before/after compares code, not two trainings.
        command += ["--model", str(Path(model).resolve())]
    parser = build_parser()
    for name in ("mix", "precision", "long_customers", "long_turns", "burst_rate", "burst_seconds", "burst_every"):
        default = parser.get_default(name)
        value = getattr(args, name, default)
        if value != default:
            command += ["--" + name.replace("_", "-"), str(value)]
    return command


def run_baseline(tree: Path, revision: str, args, workdir: Path, round_no: int,
                 model: Optional[Path] = None) -> Dict[str, Any]:
    """The same load against this project at `revision` (checked out in `tree`), by that revision's own benchmark."""
    out = workdir / f"baseline-{round_no}"
    env = project_env(pythonpath=str(tree))
    command = [sys.executable, "-m", "bot.bench_load", *baseline_arguments(args, model, out)]
    print(f"==> before ({revision}), round {round_no}: its own servers and benchmark in {tree}", flush=True)
    subprocess.run(command, cwd=str(tree), env=env, check=True)
    [row] = json.loads((out / "load.json").read_text())
    row["system"] = f"before ({revision})"
    return row


def checkout(revision: str, workdir: Path) -> Path:
    """A worktree of this repository at `revision`, with the trained sentiment model and widget build it needs."""
    tree = workdir / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(tree), revision], cwd=str(PROJECT_ROOT),
                   check=True, capture_output=True)
    # Built outputs git does not hold (models, answer index, recommender, widget): the same for both.
    for ignored in ("artifacts/sentiment", "artifacts/index", "artifacts/recommender", "web/dist"):
        source, target = PROJECT_ROOT / ignored, tree / ignored
        if source.exists() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    # The benchmark data beside the clone (../shared/data: the support-day mix reads BANKING77 there).
    shared = PROJECT_ROOT.parent / "shared"
    if shared.exists() and not (tree.parent / "shared").exists():
        (tree.parent / "shared").symlink_to(shared)
    return tree


def table(rows: List[Dict[str, Any]], args) -> str:
    lines = [
        f"Offered: {args.rate} msg/s over {args.customers} customers for {args.duration}s, open loop "
        f"(latency from the scheduled send time; timeout {args.timeout}s)"
        + (f"; bursts of {args.burst_rate} msg/s for {args.burst_seconds:.0f}s every {args.burst_every:.0f}s"
           if getattr(args, "burst_rate", None) else ""),
        "",
        "| system | messages | answered/s | p50 ms | p95 ms | p99 ms | errors | refused (503) | CPU ms/msg (all) | CPU ms/msg (Rasa) | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["error_kinds"].items()))
        lines.append(
            f"| {r['system']} | {r['messages']} | {r['throughput']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | "
            f"{r['p99']:.0f} | {r['errors']}{' (' + kinds + ')' if kinds else ''} | {r.get('refused', 0)} | "
            f"{r['cpu_ms_per_msg']:.1f} | "
            f"{r['rasa_cpu_ms_per_msg']:.1f} | {r['load_avg']:.1f} |"
        )
    systems = list(dict.fromkeys(r["system"] for r in rows))
    if any(len([r for r in rows if r["system"] == name]) > 1 for name in systems):
        lines.append("")
        lines.append("Median over the rounds: " + "; ".join(
            f"{name}: p95 {statistics.median(r['p95'] for r in rows if r['system'] == name):.0f} ms, "
            f"CPU {statistics.median(r['cpu_ms_per_msg'] for r in rows if r['system'] == name):.1f} ms/msg "
            f"(Rasa {statistics.median(r['rasa_cpu_ms_per_msg'] for r in rows if r['system'] == name):.1f})"
            for name in systems))
    if len(rows) == 2 and rows[1]["p95"] > 0 and rows[1]["system"] == "stock-rasa":
        ours, stock = rows
        lines.append("")
        lines.append(f"p95 ratio stock/ours: {stock['p95'] / max(ours['p95'], 1e-9):.1f}x; "
                     f"answered/s ratio ours/stock: {ours['throughput'] / max(stock['throughput'], 1e-9):.2f}x")
    for r in rows:
        if r.get("failed_examples"):
            lines.append("")
            lines.append(f"First failures, {r['system']}: " + "; ".join(r["failed_examples"][:5]))
    for r in rows:
        if r.get("stages"):
            lines.append("")
            lines.append(f"Mean per stage, {r['system']} (from /metrics): " +
                         ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(r["stages"].items())))
        if line := within_line(r):
            lines.append(line)
        if line := client_line(r):
            lines.append(line)
        if line := gc_line(r):
            lines.append(line)
    return "\n".join(lines)


def gc_pauses(text: str) -> Dict[str, Dict[str, float]]:
    """`{generation: {"count": n, "seconds": total}}` of a server's ``assistant_gc_pause_seconds`` (/metrics text);
    empty for a server that does not time its collector."""
    pauses: Dict[str, Dict[str, float]] = {}
    for stage, kind, labels, value in _seconds_samples(text):
        if stage == "assistant_gc_pause" and kind in ("count", "sum") and 'generation="' in labels:
            generation = labels.split('generation="', 1)[1].split('"', 1)[0]
            pauses.setdefault(generation, {"count": 0.0, "seconds": 0.0})["count" if kind == "count" else "seconds"] = value
    return pauses


def gc_line(row: Dict[str, Any]) -> str:
    """'Full garbage collections, <system>: rasa 2 (0.2 s in all), actions 0' for a row with `gc`, else ''."""
    servers = row.get("gc") or {}
    if not servers:
        return ""
    parts = []
    for server, pauses in servers.items():
        full = pauses.get("2")
        parts.append(f"{server} not timed" if not pauses else
                     f"{server} {full['count']:.0f} ({full['seconds']:.2f} s in all)" if full else f"{server} 0")
    return f"Full garbage collections (generation 2, from /metrics), {row['system']}: " + ", ".join(parts)


def client_line(row: Dict[str, Any]) -> str:
    """The driver's own share of the latency (`client_shares`), or "" for a row without it."""
    c = row.get("client") or {}
    if not c:
        return ""
    return (f"Client side, {row['system']}: send lag p50/p95/max {c['send_lag_p50']:.0f}/{c['send_lag_p95']:.0f}/"
            f"{c['send_lag_max']:.0f} ms, waiting for a connection {c['connect_p50']:.0f}/{c['connect_p95']:.0f}/"
            f"{c['connect_max']:.0f} ms, the rest (server) {c['after_connect_p50']:.0f}/{c['after_connect_p95']:.0f}/"
            f"{c['after_connect_max']:.0f} ms"
            + (f", of which in the server's handler (Server-Timing) {c['handler_p50']:.0f}/{c['handler_p95']:.0f}/"
               f"{c['handler_max']:.0f} ms and before it {c['before_handler_p50']:.0f}/{c['before_handler_p95']:.0f}/"
               f"{c['before_handler_max']:.0f} ms" if "handler_p50" in c else ""))


def customers_for(args, rate: float, prefix: str = "day") -> Tuple[List[Any], str]:
    """The planned customers for one run at `rate`, and a paragraph saying what the traffic is.

    `prefix` starts every sender id of the support-day mix: runs that share
    servers give each rate its own, so no conversation carries over.
    """
    if args.mix == "support-day":
        from bot.load_mix import composition, support_day

        people: List[Any] = support_day(args.customers, rate, args.duration, args.seed,
                                        long_customers=args.long_customers, long_turns=args.long_turns,
                                        prefix=prefix)
        c = composition(people)
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(c["kinds"].items()))
        text = (f"Traffic (support-day mix, bot/load_mix.py): {c['messages']} messages, {c['real_share']:.0%} of them "
                f"real customer questions (BANKING77 test split); planned {kinds}; {args.long_customers} conversations "
                f"start {args.long_turns} turns old (sent before the clock starts), {c['past_100_turns']} pass 100 turns, "
                f"the longest {c['longest_conversation']}. The per-customer limit of 30 messages a minute is off so the "
                f"history can be sent quickly.\n\n")
    else:
        people, text = plan(args.customers, rate, args.duration, args.seed), ""
    if args.burst_rate:
        people += burst_plan(rate, args.burst_rate, args.burst_seconds, args.burst_every, args.duration, args.seed)
    return people, text


def keep_stock_model(model: Path, out: Path) -> Path:
    """A copy of the trained stock model beside the report, for --stock-model next time."""
    out.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(model, out / "stock-model.tar.gz"))


SYSTEMS = {"ours", "ours-fp32", "stock"}


def trained_models(args, systems: List[str], workdir: Path) -> Tuple[Optional[Path], Optional[Path]]:
    """(our model, stock model) for the systems named: the archives given, else trained (stock's copy kept in --out)."""
    model = stock_model = None
    if {"ours", "ours-fp32"} & set(systems):
        env = project_env()
        model = args.model or prepare(env, PROJECT_ROOT / "config.yml", Path(get_settings().model_dir))
    if "stock" in systems:
        stock_model = args.stock_model or keep_stock_model(train_stock(workdir, args.stock_epochs), args.out)
    return model, stock_model


def run_named(name: str, model: Optional[Path], stock_model: Optional[Path], args, people: List[Any],
              workdir: Path) -> Dict[str, Any]:
    """One of `SYSTEMS` under the load: ours (bfloat16 where the CPU has it), ours in fp32, or stock Rasa."""
    if name == "stock":
        credentials = workdir / "stock_credentials.yml"
        credentials.write_text("rest:\n")
        return run_system("stock-rasa", stock_model, credentials, args, people, workdir, round_no=int(args.rate))
    precision = args.precision
    if name == "ours-fp32":  # bfloat16 off, as on a CPU without it, in the same invocation
        args.precision = "fp32"
    try:
        return run_system(name, model, PROJECT_ROOT / "bot" / "credentials.yml", args, people, workdir,
                          round_no=int(args.rate))
    finally:
        args.precision = precision


def rates_table(rows: List[Dict[str, Any]], rates: List[float]) -> str:
    systems = list(dict.fromkeys(r["system"] for r in rows))
    lines = [
        "| offered msg/s | system | messages | answered/s | p50 ms | p95 ms | p99 ms | errors | refused (503) | "
        "handoffs | clicks/ratings sent | CPU ms/msg (all) | CPU ms/msg (Rasa) | load avg |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        conv = r.get("conversation", {})
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["error_kinds"].items()))
        lines.append(
            f"| {r['rate']:.0f} | {r['system']} | {r['messages']} | {r['throughput']:.1f} | {r['p50']:.0f} | "
            f"{r['p95']:.0f} | {r['p99']:.0f} | {r['errors']}{' (' + kinds + ')' if kinds else ''} | "
            f"{r.get('refused', 0)} | {conv.get('handoffs', 0)} | {sum(conv.get('clicks_and_ratings', {}).values())} | "
            f"{r['cpu_ms_per_msg']:.1f} | {r['rasa_cpu_ms_per_msg']:.1f} | {r['load_avg']:.1f} |")
    lines.append("")
    for name in systems:
        good = [r["rate"] for r in rows if r["system"] == name and r["p95"] < 100 and r["errors"] == 0]
        lines.append(f"Highest offered rate with p95 under 100 ms and no errors, {name}: "
                     + (f"{max(good):.0f} msg/s" if good else f"none of {', '.join(f'{x:.0f}' for x in rates)}"))
    return "\n".join(lines)


def report_rates(rows: List[Dict[str, Any]], args, rates: List[float], mix_report: str) -> int:
    report = (f"CPU: {cpu_description()}; our serving precision: {args.precision}\n\n" + mix_report
              + f"Open loop over {args.customers} customers, {args.duration:.0f} s per rate, each rate on freshly "
                f"started servers with fresh databases; latency from each message's scheduled send time; "
                f"timeout {args.timeout:.0f} s.\n\n" + rates_table(rows, rates))
    for r in rows:
        if r.get("stages"):
            report += f"\n\nMean per stage, {r['system']} at {r['rate']:.0f} msg/s (from /metrics): " + ", ".join(
                f"{k} {v:.1f} ms" for k, v in sorted(r["stages"].items()))
        if line := within_line(r):
            report += "\n" + line
    if args.stock_epochs and "stock" in args.systems:
        report += f"\n\nStock Rasa trained with {args.stock_epochs} epochs instead of 100."
    save_report(args.out, report, rows, by_rate=True)
    return 0


def save_report(out: Path, report: str, rows: List[Dict[str, Any]], by_rate: bool = False) -> None:
    """Print the report; write load.md, load.json and each server's /metrics text into `out`."""
    print("\n" + report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.md").write_text(report + "\n")
    for row in rows:
        for server, text in row.pop("metrics", {}).items():
            rate = f"-{row['rate']:g}" if by_rate else ""
            (out / f"metrics-{row['system']}{rate}-{server}.txt").write_text(text)
    (out / "load.json").write_text(json.dumps(rows, indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options (also read by `baseline_arguments` for their defaults)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0, help="offered messages per second")
    parser.add_argument("--customers", type=int, default=150)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of scheduled sends")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a message counts as an error")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, help="our Rasa model archive (default: newest in models/, trained if none)")
    parser.add_argument("--stock-model", type=Path, help="a trained stock model archive (default: train one)")
    parser.add_argument("--stock-epochs", type=int, default=None, help="shorten the stock 100 epochs (stated in the report)")
    parser.add_argument("--systems", default="ours,stock",
                        help="comma list: ours, ours-fp32 (ours with bfloat16 off), stock")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "load")
    parser.add_argument("--baseline", help="also run this git revision of the project (before/after), alternating with ours")
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline: rounds of ours, then the baseline")
    parser.add_argument("--promote-at", type=float, default=None,
                        help="ours only: publish a release with a marked copy of the model this many seconds into the run")
    parser.add_argument("--marker", default="[promoted] ", help="with --promote-at: what the promoted model's answers start with")
    parser.add_argument("--poll-seconds", type=float, default=2.0, help="with --promote-at: the servers' model_poll_seconds")
    parser.add_argument("--burst-rate", type=float, default=None,
                        help="messages a second during bursts (steady --rate in between); see burst_plan")
    parser.add_argument("--burst-seconds", type=float, default=10.0, help="length of each burst")
    parser.add_argument("--burst-every", type=float, default=60.0, help="seconds from one burst to the next")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="our models' serving precision (fp32: as on a CPU without bfloat16)")
    parser.add_argument("--mix", choices=("scripted", "support-day"), default="scripted",
                        help="scripted: the demo's held-out utterances in short scripts; support-day: bot.load_mix "
                             "(a third or more real BANKING77 questions, long conversations, handoffs, forms, clicks, ratings)")
    parser.add_argument("--rates", help="comma list of offered rates, each run on freshly started servers (overrides --rate)")
    parser.add_argument("--long-customers", type=int, default=10,
                        help="support-day: customers whose conversation is --long-turns messages old when the run starts")
    parser.add_argument("--long-turns", type=int, default=100)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    rates = [float(x) for x in args.rates.split(",")] if args.rates else [args.rate]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - SYSTEMS
    if unknown:
        parser.error(f"unknown system {sorted(unknown)[0]!r} (known: {', '.join(sorted(SYSTEMS))})")
    rows = []
    if len(rates) > 1:
        if args.baseline or args.promote_at is not None:
            parser.error("--rates runs each rate on fresh servers; use --rate with --baseline or --promote-at")
        try:
            model, stock_model = trained_models(args, systems, workdir)
            for rate in rates:
                args.rate = rate
                people, mix_report = customers_for(args, rate)
                for name in systems:
                    rows.append(run_named(name, model, stock_model, args, people, workdir))
                    rows[-1]["rate"] = rate
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return report_rates(rows, args, rates, mix_report)
    people, mix_report = customers_for(args, args.rate)
    try:
        model, stock_model = trained_models(args, systems + (["ours"] if args.baseline else []), workdir)
        if args.baseline:
            tree = checkout(args.baseline, workdir)
            try:
                for round_no in range(1, args.rounds + 1):
                    rows.append(run_system("ours", model, PROJECT_ROOT / "bot" / "credentials.yml", args, people, workdir,
                                           round_no))
                    rows.append(run_baseline(tree, args.baseline, args, workdir, round_no, model))
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=str(PROJECT_ROOT))
            systems = [s for s in systems if s != "ours"]
        for name in systems:
            rows.append(run_named(name, model, stock_model, args, people, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = f"CPU: {cpu_description()}; our serving precision: {args.precision}\n\n" + mix_report + table(rows, args)
    for row in rows:
        if row.get("burst"):
            report += "\n\n" + burst_table(row)
    for row in rows:
        if row.get("hot_swap"):
            report += "\n\nHot swap, " + row["system"] + ":\n" + hot_swap_table(row["hot_swap"])
    if args.stock_epochs and "stock" in systems:
        report += f"\n\nStock Rasa trained with {args.stock_epochs} epochs instead of 100."
    save_report(args.out, report, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
