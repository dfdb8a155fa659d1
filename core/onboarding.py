"""The onboarding project's review state: candidate intents, the supervisors' decisions on them.

`python -m training.onboard` discovers candidate intents in a company's chat
history and writes them as a *proposal*; supervisors review it from the inbox
(`bot.insight.onboarding_page`) or the command line (``python -m
training.onboard review``); the build step turns the reviewed result into a
Rasa project. This module is the one reader and writer of that state, so the
inbox (which may not import `training`) and the offline scripts agree on it.

On disk, inside the onboarding project folder ``PROJECT``::

    PROJECT/onboarding/proposal.json    what discovery proposed (one generation)
    PROJECT/onboarding/decisions.jsonl  every decision ever taken, one a line, never rewritten

The reviewed state is the proposal with the decisions of its generation
applied in order (`apply_decision`). A decision is checked against the
state before it is appended, so the log holds only decisions that apply.
When discovery runs again on new transcripts it starts from the reviewed
state: it writes the next generation's proposal with the reviewed candidates
folded in (their status, names, responses and examples kept) and only the
new requests proposed as new candidates; earlier decisions stay in the log.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from core.files import write_text_atomically

PROPOSAL_FILE = "proposal.json"
DECISIONS_FILE = "decisions.jsonl"
STATE_DIR = "onboarding"
FORMAT_VERSION = 1

STATUSES = ("proposed", "accepted", "discarded")
KINDS = ("question", "task")
ACTIONS = ("accept", "discard", "reopen", "rename", "merge", "split", "move", "response", "kind")
# Intent names Rasa or the built project reserves.
RESERVED_NAMES = {"nlu_fallback", "out_of_scope", "greet", "goodbye", "affirm", "deny", "thank"}
INTENT_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
MAX_RESPONSE_CHARS = 2000

_append_lock = threading.Lock()


class ReviewError(ValueError):
    """A decision that cannot apply to the current state (unknown candidate, bad name, ...)."""


@dataclasses.dataclass
class Example:
    """One customer request of the history (personal data already redacted)."""

    id: str
    text: str
    answer: str = ""  # the agent's answer that resolved it, when one did
    conversation: str = ""
    source: str = ""  # "file:line" of the request in the transcripts
    outlier: bool = False  # far from the rest of its candidate


@dataclasses.dataclass
class Candidate:
    """A candidate intent: a cluster of requests and what discovery proposes for it."""

    id: str
    name: str
    examples: List[Example]
    status: str = "proposed"
    kind: str = "question"
    kind_evidence: List[str] = dataclasses.field(default_factory=list)
    response: str = ""  # drafted (or edited) answer for a simple question
    response_alternatives: List[str] = dataclasses.field(default_factory=list)
    words: List[str] = dataclasses.field(default_factory=list)  # most telling words
    entity_spans: List[Dict[str, Any]] = dataclasses.field(default_factory=list)  # {"kind", "text", "count"}
    cohesion: float = 0.0  # mean cosine of its examples to their centre
    near_duplicates: List[str] = dataclasses.field(default_factory=list)  # ids of very similar candidates
    origin: str = "new"  # "new" (this generation) or "reviewed" (carried over from an earlier review)

    @property
    def size(self) -> int:
        return len(self.examples)


@dataclasses.dataclass
class Proposal:
    """One generation of discovery's output (and, with decisions applied, the reviewed state)."""

    generation: int
    candidates: List[Candidate]
    estimate: Dict[str, Any] = dataclasses.field(default_factory=dict)  # {"k", "low", "high", "method"}
    summary: Dict[str, Any] = dataclasses.field(default_factory=dict)  # counts of what was read and skipped
    created: str = ""

    def candidate(self, candidate_id: str) -> Candidate:
        for c in self.candidates:
            if c.id == candidate_id:
                return c
        raise ReviewError(f"no candidate intent '{candidate_id}'")

    def next_id(self) -> str:
        numbers = [int(c.id[1:]) for c in self.candidates if re.fullmatch(r"c\d+", c.id)]
        return f"c{max(numbers, default=0) + 1}"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def proposal_to_dict(proposal: Proposal) -> Dict[str, Any]:
    return {"version": FORMAT_VERSION, **dataclasses.asdict(proposal)}


def proposal_from_dict(data: Dict[str, Any]) -> Proposal:
    """Read a proposal written by `proposal_to_dict`, or say what is wrong with it."""
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise ReviewError(f"not an onboarding proposal of format version {FORMAT_VERSION}")
    try:
        candidates = [
            Candidate(**{**c, "examples": [Example(**e) for e in c["examples"]]}) for c in data["candidates"]
        ]
        return Proposal(generation=int(data["generation"]), candidates=candidates,
                        estimate=dict(data.get("estimate") or {}), summary=dict(data.get("summary") or {}),
                        created=str(data.get("created", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReviewError(f"malformed onboarding proposal: {exc}") from exc


def _check_name(proposal: Proposal, name: Any, keep: Optional[str] = None) -> str:
    if not isinstance(name, str) or not INTENT_NAME.match(name):
        raise ReviewError(f"intent name {name!r} must be 2-64 characters: lower-case letters, digits and _, "
                          f"starting with a letter")
    if name in RESERVED_NAMES:
        raise ReviewError(f"intent name '{name}' is reserved")
    for c in proposal.candidates:
        if c.name == name and c.id != keep and c.status != "discarded":
            raise ReviewError(f"intent name '{name}' is already used by candidate {c.id}")
    return name


def _example_ids(proposal: Proposal) -> Dict[str, Tuple[Candidate, int]]:
    return {e.id: (c, i) for c in proposal.candidates for i, e in enumerate(c.examples)}


def apply_decision(proposal: Proposal, decision: Dict[str, Any]) -> None:
    """Apply one decision to `proposal` in place, or raise `ReviewError` leaving it unchanged.

    Decisions (``action`` and its fields):
    ``accept``/``discard``/``reopen`` ``id``; ``rename`` ``id``, ``name``;
    ``merge`` ``ids`` (the first keeps its id and name unless ``name`` is
    given; the others are emptied and discarded); ``split`` ``id``,
    ``examples`` (ids moved to a new candidate), ``name`` (and optional
    ``new_id``, recorded so the split replays the same); ``move``
    ``example``, ``to``; ``response`` ``id``, ``text``; ``kind`` ``id``,
    ``kind`` (question or task).
    """
    action = decision.get("action")
    if action not in ACTIONS:
        raise ReviewError(f"unknown review action {action!r}; one of {', '.join(ACTIONS)}")
    if action in ("accept", "discard", "reopen"):
        c = proposal.candidate(str(decision.get("id")))
        if action == "accept" and not c.examples:
            raise ReviewError(f"candidate {c.id} has no examples left to accept")
        c.status = {"accept": "accepted", "discard": "discarded", "reopen": "proposed"}[action]
    elif action == "rename":
        c = proposal.candidate(str(decision.get("id")))
        c.name = _check_name(proposal, decision.get("name"), keep=c.id)
    elif action == "merge":
        ids = decision.get("ids")
        if not isinstance(ids, list) or len(ids) < 2 or len(set(map(str, ids))) != len(ids):
            raise ReviewError("merge needs two or more different candidate ids")
        keep, *others = [proposal.candidate(str(i)) for i in ids]
        name = _check_name(proposal, decision["name"], keep=keep.id) if decision.get("name") else keep.name
        for other in others:
            keep.examples.extend(other.examples)
            keep.response_alternatives.extend(a for a in [other.response, *other.response_alternatives]
                                              if a and a not in keep.response_alternatives)
            other.examples, other.status = [], "discarded"
        keep.name = name
    elif action == "split":
        c = proposal.candidate(str(decision.get("id")))
        wanted = decision.get("examples")
        if not isinstance(wanted, list) or not wanted:
            raise ReviewError("split needs the ids of the examples to move to the new intent")
        own = {e.id for e in c.examples}
        missing = [str(e) for e in wanted if str(e) not in own]
        if missing:
            raise ReviewError(f"examples {', '.join(missing[:5])} are not in candidate {c.id}")
        if len(set(map(str, wanted))) >= len(c.examples):
            raise ReviewError(f"a split must leave examples in {c.id}; to rename it, use rename")
        new_id = str(decision.get("new_id") or proposal.next_id())
        if any(x.id == new_id for x in proposal.candidates):
            raise ReviewError(f"candidate id '{new_id}' already exists")
        name = _check_name(proposal, decision.get("name"))
        # Outlier marks measure distance to the old candidate's centre: a reviewer's placement clears them.
        moved = [dataclasses.replace(e, outlier=False) for e in c.examples if e.id in set(map(str, wanted))]
        c.examples = [e for e in c.examples if e.id not in set(map(str, wanted))]
        proposal.candidates.append(Candidate(id=new_id, name=name, examples=moved, kind=c.kind,
                                             kind_evidence=["split from " + c.id], origin=c.origin))
        decision["new_id"] = new_id
    elif action == "move":
        where = _example_ids(proposal).get(str(decision.get("example")))
        if where is None:
            raise ReviewError(f"no example '{decision.get('example')}'")
        target = proposal.candidate(str(decision.get("to")))
        source, index = where
        if source.id == target.id:
            raise ReviewError(f"example {decision.get('example')} is already in {target.id}")
        target.examples.append(dataclasses.replace(source.examples.pop(index), outlier=False))
    elif action == "response":
        c = proposal.candidate(str(decision.get("id")))
        text = decision.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ReviewError("a response needs its text")
        if len(text) > MAX_RESPONSE_CHARS:
            raise ReviewError(f"a response is at most {MAX_RESPONSE_CHARS} characters")
        c.response = text.strip()
    elif action == "kind":
        c = proposal.candidate(str(decision.get("id")))
        if decision.get("kind") not in KINDS:
            raise ReviewError(f"kind must be one of {', '.join(KINDS)}")
        c.kind = decision["kind"]


_STATUS_DONE = {"accept": "Accepted", "discard": "Discarded", "reopen": "Reopened"}


def describe_decision(decision: Dict[str, Any]) -> str:
    """What one recorded decision did, as a sentence (the inbox page and the command line say the same)."""
    action = decision.get("action")
    if action == "split":
        return (f"Split {len(decision['examples'])} examples of {decision['id']} into {decision['new_id']} "
                f"({decision['name']}).")
    if action == "merge":
        return f"Merged {', '.join(decision['ids'][1:])} into {decision['ids'][0]}."
    if action == "move":
        return f"Moved {decision['example']} to {decision['to']}."
    if action == "rename":
        return f"Renamed {decision['id']} to {decision['name']}."
    if action == "response":
        return f"Saved the response of {decision['id']}."
    if action == "kind":
        return f"{decision['id']} is now a {decision['kind']}."
    return f"{_STATUS_DONE.get(str(action), str(action))} {decision.get('id')}."


def describe_estimate(proposal: Proposal) -> str:
    """Discovery's estimate of the number of intents, with its range and method, as a sentence."""
    est = proposal.estimate
    if not est:
        return "Discovery gave no estimate of the number of intents."
    spread = f" (likely between {est.get('low')} and {est.get('high')})" if "low" in est and "high" in est else ""
    method = f", by {est['method']}" if est.get("method") else ""
    return f"Discovery estimated {est.get('k')} intents{spread}{method}."


class OnboardingProject:
    """The review state of one onboarding project folder (see the module docstring)."""

    def __init__(self, folder: Any):
        self.folder = Path(folder)
        self.state_dir = self.folder / STATE_DIR

    @property
    def proposal_path(self) -> Path:
        return self.state_dir / PROPOSAL_FILE

    @property
    def decisions_path(self) -> Path:
        return self.state_dir / DECISIONS_FILE

    def exists(self) -> bool:
        return self.proposal_path.exists()

    def proposal(self) -> Proposal:
        """The current generation's proposal as discovery wrote it."""
        if not self.proposal_path.exists():
            raise ReviewError(f"no onboarding proposal in {self.folder}: run python -m training.onboard first")
        try:
            data = json.loads(self.proposal_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReviewError(f"{self.proposal_path}: cannot read: {exc}") from exc
        return proposal_from_dict(data)

    def decisions(self, generation: Optional[int] = None) -> List[Dict[str, Any]]:
        """Every decision in the log (of one generation when given), oldest first."""
        if not self.decisions_path.exists():
            return []
        out = []
        for number, line in enumerate(self.decisions_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                decision = json.loads(line)
            except ValueError as exc:  # a torn last line after a crash: the decision was never acknowledged
                raise ReviewError(f"{self.decisions_path}:{number}: unreadable decision: {exc}") from exc
            if generation is None or decision.get("generation") == generation:
                out.append(decision)
        return out

    def reviewed(self) -> Proposal:
        """The proposal with every decision of its generation applied."""
        proposal = self.proposal()
        for decision in self.decisions(proposal.generation):
            apply_decision(proposal, dict(decision))
        return proposal

    def decide(self, decision: Dict[str, Any], by: str = "") -> Dict[str, Any]:
        """Check `decision` against the reviewed state, then append it to the log; returns what was kept."""
        with _append_lock:
            state = self.reviewed()
            kept = {**decision, "generation": state.generation, "by": by or decision.get("by", ""), "at": _now()}
            apply_decision(state, kept)  # raises ReviewError before anything is written
            line = json.dumps(kept, ensure_ascii=False, sort_keys=True) + "\n"
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with open(self.decisions_path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            return kept

    def write_proposal(self, proposal: Proposal) -> None:
        """Save a new generation's proposal (discovery is its one writer)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        proposal.created = proposal.created or _now()
        write_text_atomically(self.proposal_path,
                              json.dumps(proposal_to_dict(proposal), ensure_ascii=False, indent=1))


def usable(proposal: Proposal) -> Sequence[Candidate]:
    """The accepted candidates that have examples: what the build step turns into intents."""
    return [c for c in proposal.candidates if c.status == "accepted" and c.examples]


# What review shows beside a candidate (the CLI's `review list` and the inbox page alike).
SMALL_CANDIDATE = 5  # fewer examples than this: too few to train an intent on
MANY_OUTLIERS_SHARE = 0.25  # at least this share of a candidate's examples far from its centre


def flags(proposal: Proposal, candidate: Candidate) -> List[str]:
    """Warnings for a reviewer: near-duplicates still open, many outliers, too small (none for a discarded one)."""
    if candidate.status == "discarded":
        return []
    live = {c.id for c in proposal.candidates if c.status != "discarded"}
    out = [f"near-duplicate of {other}" for other in candidate.near_duplicates if other in live]
    outliers = sum(1 for e in candidate.examples if e.outlier)
    if candidate.examples and outliers >= 2 and outliers >= MANY_OUTLIERS_SHARE * candidate.size:
        out.append(f"many outliers ({outliers})")
    if candidate.size < SMALL_CANDIDATE:
        out.append("small")
    return out
