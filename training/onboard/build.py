"""Build: the reviewed onboarding project -> a Rasa project, trained, evaluated, reported.

    python -m training.onboard build PROJECT [--holdout 0.2] [--seed 42] [--min-examples 5]
        [--min-cohesion 0.58] [--epochs N] [--trainable-layers N] [--no-train]

From the reviewed state (`core.onboarding.OnboardingProject(PROJECT).reviewed()`)
the accepted candidates with examples (`usable`) become intents, except
those too small (fewer than ``--min-examples``) or too mixed (cohesion of
their examples below ``--min-cohesion``, measured again on the reviewed
examples with the answer index's encoder, or many outliers as
`core.onboarding.MANY_OUTLIERS_SHARE` says), which are left out and listed.
At least two intents must remain. A seeded ``--holdout`` share of each
intent's examples (at least one), and the same share of the rest of the
history, is held out for the evaluation. Written, each folder whole
(`core.files.replacing_folder`):

- ``PROJECT/index/``: the answer index (`retrieval.index.AnswerIndex`) over the
  rest of the history: the answered requests that are not intent examples,
  not held out and not of a task candidate (an answer to someone's order is
  no answer for another customer); it may be empty;
- ``PROJECT/rasa/``: ``config.yml`` (the root config.yml's importer and NLU
  pipeline, the retriever reading ``PROJECT/index``, without the demo bank's
  frustration reader; RulePolicy), ``domain.yml`` and ``data/nlu.yml``,
  ``data/rules.yml``: each question intent answered by its reviewed response,
  each task intent by a reply saying a colleague will help, then the
  project's handoff (``action_handoff`` of the project's action server: the
  conversation waits in the inbox's queue; no form does the task), a request
  for a person the same way, greetings, thanks and goodbyes (in English only),
  and every other request
  (``nlu_fallback``) by ``action_answer_from_history``: the closest past
  answer above the ``retrieval_threshold`` setting, else a request to rephrase;
- ``PROJECT/models/onboarding.tar.gz``: ``rasa train`` of that project;
- ``PROJECT/onboarding/report.json`` and ``report.md``: intent accuracy on the
  held-out examples of the intents, coverage (the share of all held-out
  requests answered confidently: a built intent above the fallback threshold,
  or, for ``nlu_fallback``, an answer-index hit above ``retrieval_threshold``),
  the intents and the candidates left out with the reason.

Serve the built assistant as the demo is served, with ``ASSISTANT_INDEX_DIR``
naming ``PROJECT/index`` (the Rasa server reads the index folder written in
the config; the action server and the start-up check read the setting).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from core.files import replacing_folder, write_text_atomically
from core.language import is_english
from core.onboarding import (MANY_OUTLIERS_SHARE, SMALL_CANDIDATE, Candidate, Example, OnboardingProject,
                             ReviewError, usable)
from core.processes import project_env
from core.settings import PROJECT_ROOT, get_settings

MODEL_NAME = "onboarding"
CLASSIFIER = "nlu.TransformerIntentClassifier"
RETRIEVER = "retrieval.AnswerRetriever"
# Pipeline components of the demo bank's own dialogue (its `frustrated` intent and handoff rules).
DEMO_ONLY_COMPONENTS = {"nlu.FrustrationReader"}
DEFAULT_FALLBACK_THRESHOLD = 0.45
HISTORY_ACTION = "action_answer_from_history"
RATE_ACTION = "action_rate_answer"

# Small talk a built assistant answers when its language is English (the examples are English).
SMALL_TALK = {
    "greet": (["hi", "hello", "hey", "hello there", "good morning", "good afternoon", "hi!", "hey there",
               "good evening", "hiya", "morning", "hello, anyone there?"],
              "Hello! How can I help you today?"),
    "thank": (["thanks", "thank you", "thanks a lot", "great, thanks", "cheers", "thank you very much", "ok thanks",
               "perfect, thank you", "thx", "many thanks", "brilliant, thanks", "that helps, thanks"],
              "You're welcome! Is there anything else I can help with?"),
    "goodbye": (["bye", "goodbye", "see you", "bye bye", "that's all", "have a nice day", "that's all, bye",
                 "see you later", "cya", "nothing else, bye", "good night", "talk to you later"],
                "Goodbye, and thanks for getting in touch!"),
}
# Responses the project's actions use (bot/actions/history.py), worded for any company.
ACTION_RESPONSES = {
    "utter_history_answer": "Here's how we've answered a similar question before:\n\n{answer}",
    "utter_please_rephrase": "Sorry, I didn't quite get that. Could you rephrase?",
    "utter_offer_human": "If it still doesn't help, please contact our support team.",
    "utter_out_of_scope": "Sorry, I can't help with that one.",
    "utter_default": "Sorry, I can't help with that one yet. Could you rephrase?",
    "utter_ask_rating": "How was my last answer?",
    "utter_rating_thanks_up": "Thanks for the feedback, I'm glad that helped!",
    "utter_rating_thanks_down": "Thanks for telling me; I'll take that into account for similar questions.",
    "utter_rating_nothing_to_rate": "Thanks! There's no answer of mine to rate yet. Ask me something first.",
}
HANDOFF_ACTION = "action_handoff"
STOP_WAITING = [{"title": "Stop waiting", "payload": "/cancel_handoff"}]
# Responses of the project's handoff (action_handoff in bot/actions/dialogue.py, the desk in
# bot/handoff/): the conversation waits in the inbox's queue for a person, as in the demo.
HANDOFF_RESPONSES: Dict[str, Dict[str, Any]] = {
    "utter_handoff_ack": {"text": "I've passed your conversation to our support team."},
    "utter_handoff_queued": {"text": "You're number {position} in the queue for one of our team. Anything you write "
                                     "now is kept for them.", "buttons": STOP_WAITING},
    "utter_handoff_still_waiting": {"text": "Thanks, I've added that for our team. You're number {position} in the "
                                            "queue.", "buttons": STOP_WAITING},
    "utter_handoff_wait": {"text": "Our team is answering in about {minutes} minutes at the moment."},
    "utter_handoff_nobody_online": {
        "text": "Nobody from our team is online right now; we're here {hours}. You can leave a message and we'll "
                "reply in this conversation, or carry on with me.",
        "buttons": [{"title": "Leave a message", "payload": "/leave_message"},
                    {"title": "Carry on with the assistant", "payload": "/cancel_handoff"}]},
    "utter_handoff_message_kept": {"text": "Please write your message here: our team will read it and reply in this "
                                           "conversation."},
    "utter_handoff_cancelled": {"text": "OK, you've left the queue and you're back with the assistant. How can I help?"},
    "utter_nothing_to_cancel": {"text": "You're not waiting for anyone, so there's nothing to cancel. How can I help?"},
    "utter_handoff_agent_joined": {"text": "{agent} from our team has joined the conversation."},
    "utter_handoff_returned": {"text": "You're back with the assistant. How else can I help?"},
    "utter_handoff_unavailable": {"text": "Sorry, I couldn't reach our support team just now, so nobody has been "
                                          "notified yet. Please try again in a few minutes."},
    "utter_handoff_after_fallbacks": {"text": "I'm not getting this right, so I'm passing you to our team: you're "
                                              "number {position} in the queue.", "buttons": STOP_WAITING},
    "utter_handoff_frustrated": {"text": "I'm sorry this has been frustrating. I'm bringing in our team: you're "
                                         "number {position} in the queue.", "buttons": STOP_WAITING},
}
TASK_REPLY = "One of our colleagues needs to help you with this ({what}), so I'm passing you to them."


class BuildError(ValueError):
    """The reviewed state cannot be built (too few intents, no proposal, a bad option); the message says why."""


@dataclasses.dataclass
class BuildOptions:
    """The knobs of a build; the defaults are the production ones."""

    holdout: float = 0.2
    seed: int = 42
    min_examples: int = SMALL_CANDIDATE
    # Measured with all-MiniLM-L6-v2: one topic's requests 0.62-0.81 (synthetic shop), 0.70 and up
    # (BANKING77 intents, 40 each); requests of mixed topics 0.47-0.55.
    min_cohesion: float = 0.58
    epochs: Optional[int] = None  # the root config's when None
    trainable_layers: Optional[int] = None
    train: bool = True

    def check(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise BuildError(f"--holdout must be between 0 and 1 (a share), got {self.holdout}")
        if self.min_examples < 2:
            raise BuildError(f"--min-examples must be at least 2 (one to train, one to hold out), got {self.min_examples}")
        for name in ("epochs", "trainable_layers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise BuildError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


@dataclasses.dataclass
class Intent:
    """A candidate built into an intent: its training and held-out examples."""

    name: str
    kind: str
    candidate: str
    response: str
    train: List[Example]
    held_out: List[Example]
    cohesion: float


@dataclasses.dataclass
class Report:
    """What a build made and how well it does (written as report.json and report.md)."""

    project: str
    model: Optional[str]
    intents: List[Dict[str, Any]]
    left_out: List[Dict[str, Any]]
    index_pairs: int
    held_out: Dict[str, int]
    intent_accuracy: Optional[float]
    coverage: Optional[float]
    coverage_by_intent: Optional[float]
    coverage_by_index: Optional[float]
    thresholds: Dict[str, float]
    timings: Dict[str, float]
    # Held-out requests of the rest of the history that a built intent answered: right only when their
    # candidate asks what that intent asks (a split topic); otherwise the classifier was sure and wrong.
    rest_answered_by_intent: int = 0
    # Each held-out request: id, text, intent (its true one; None for the rest of the history), predicted,
    # confidence, answered ("intent", "index" or None).
    requests: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)

    def table(self) -> str:
        """The report as Markdown: figures, intents, candidates left out."""
        pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
        lines = [
            "| figure | value |", "|---|---|",
            f"| intents built | {len(self.intents)} |",
            f"| candidates left out | {len(self.left_out)} |",
            f"| answer index pairs | {self.index_pairs} |",
            f"| held-out requests (intents / rest of history) | {self.held_out['intents']} / {self.held_out['history']} |",
            f"| intent accuracy (held-out intent examples) | {pct(self.intent_accuracy)} |",
            f"| coverage (held-out requests answered confidently) | {pct(self.coverage)} |",
            f"| - by an intent / by the answer index | {pct(self.coverage_by_intent)} / {pct(self.coverage_by_index)} |",
            f"| held-out requests of candidates not built that an intent answered | {self.rest_answered_by_intent} |",
            "", "| intent | kind | train | held out | correct | cohesion |", "|---|---|---|---|---|---|",
        ]
        for i in self.intents:
            correct = "-" if i.get("correct") is None else str(i["correct"])
            lines.append(f"| {i['name']} | {i['kind']} | {i['train']} | {i['held_out']} | {correct} | {i['cohesion']:.2f} |")
        if self.left_out:
            lines += ["", "| left out | candidate | examples | reason |", "|---|---|---|---|"]
            lines += [f"| {c['name']} | {c['candidate']} | {c['size']} | {c['reason']} |" for c in self.left_out]
        missed = [r["text"] for r in self.requests if not r["answered"]]
        if missed:
            lines += ["", f"Held-out requests not answered confidently ({len(missed)}; the first 20):", ""]
            lines += [f"- {' '.join(text.split())}" for text in missed[:20]]
        lines += ["", *[f"- {note}" for note in self.notes]]
        return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------ choosing the intents


def cohesion(vectors: np.ndarray) -> float:
    """Mean cosine of normalised `vectors` to their (normalised) centre: 1.0 when all say the same."""
    centre = vectors.mean(axis=0)
    norm = float(np.linalg.norm(centre))
    return float((vectors @ (centre / norm)).mean()) if norm > 0 else 0.0


def leave_out_reason(candidate: Candidate, cohesion_value: float, options: BuildOptions) -> Optional[str]:
    """Why `candidate` cannot become an intent, or None when it can."""
    if candidate.size < options.min_examples:
        return f"too small: {candidate.size} examples, fewer than {options.min_examples}"
    outliers = sum(1 for e in candidate.examples if e.outlier)
    if outliers >= 2 and outliers >= MANY_OUTLIERS_SHARE * candidate.size:
        return f"too mixed: {outliers} of {candidate.size} examples are outliers"
    if cohesion_value < options.min_cohesion:
        return f"too mixed: cohesion {cohesion_value:.2f} below {options.min_cohesion:.2f}"
    if candidate.kind == "question" and not candidate.response.strip():
        return "a question without a response: write one in the review"
    return None


def split_held_out(examples: Sequence[Example], share: float, seed: int, key: str, at_least_one: bool = True) -> Tuple[List[Example], List[Example]]:
    """(kept, held out): a seeded `share` of `examples` held out (at least one when asked and possible)."""
    ordered = sorted(examples, key=lambda e: e.id)
    random.Random(f"{seed}:{key}").shuffle(ordered)
    count = int(round(share * len(ordered)))
    if at_least_one and len(ordered) > 1:
        count = min(max(count, 1), len(ordered) - 1)
    return ordered[count:], ordered[:count]


# ------------------------------------------------------------------ the Rasa project


def _readable(name: str) -> str:
    return name.replace("_", " ")


def project_config(index_dir: Path, options: BuildOptions, root_config: Path = PROJECT_ROOT / "config.yml") -> Dict[str, Any]:
    """The built project's config.yml: the root config's importers and NLU pipeline, plain rule policies."""
    root = yaml.safe_load(root_config.read_text(encoding="utf-8")) or {}
    pipeline = []
    for part in root.get("pipeline") or []:
        part = dict(part)
        if part.get("name") in DEMO_ONLY_COMPONENTS:
            continue
        if part.get("name") == CLASSIFIER:
            if options.epochs is not None:
                part["epochs"] = options.epochs
            if options.trainable_layers is not None:
                part["trainable_layers"] = options.trainable_layers
            part["seed"] = options.seed
        if part.get("name") == RETRIEVER:
            part["index_dir"] = str(index_dir)
        pipeline.append(part)
    if not any(p.get("name") == CLASSIFIER for p in pipeline):
        raise BuildError(f"{root_config} has no {CLASSIFIER} in its pipeline to train the intents with")
    config: Dict[str, Any] = {"recipe": root.get("recipe", "default.v1"), "language": root.get("language", "en"),
                              "assistant_id": f"onboarding-{index_dir.parent.name}"[:64]}
    if root.get("importers"):
        config["importers"] = root["importers"]
    config["pipeline"] = pipeline
    config["policies"] = [{"name": "RulePolicy", "core_fallback_threshold": 0.3,
                           "core_fallback_action_name": "action_default_fallback", "enable_fallback_prediction": True}]
    return config


def fallback_threshold(config: Dict[str, Any]) -> float:
    """FallbackClassifier's threshold in `config` (the confidence below which an intent is not trusted)."""
    for part in config.get("pipeline") or []:
        if part.get("name") == "FallbackClassifier":
            return float(part.get("threshold", DEFAULT_FALLBACK_THRESHOLD))
    return DEFAULT_FALLBACK_THRESHOLD


def task_reply(intent: Intent) -> str:
    """What a task intent says before the conversation is handed to a person (no form does the task)."""
    return TASK_REPLY.format(what=_readable(intent.name))


def small_talk(language: str) -> Dict[str, Tuple[List[str], str]]:
    """The small-talk intents for `language`: SMALL_TALK in English, none in other languages."""
    return SMALL_TALK if is_english(language) else {}


def domain(intents: Sequence[Intent], language: str = "en") -> Dict[str, Any]:
    """domain.yml: the intents, their responses, the history, rating and handoff actions."""
    responses: Dict[str, Any] = {f"utter_{i.name}": [{"text": i.response if i.kind == "question" else task_reply(i)}]
                                 for i in intents}
    responses.update({f"utter_{name}": [{"text": reply}] for name, (_, reply) in small_talk(language).items()})
    responses.update({name: [{"text": text}] for name, text in ACTION_RESPONSES.items()})
    responses.update({name: [dict(response)] for name, response in HANDOFF_RESPONSES.items()})
    return {
        "version": "3.1",
        "intents": [i.name for i in intents] + list(small_talk(language))
        + ["rate_answer", "request_human", "leave_message", "cancel_handoff"],
        "entities": ["answer_id", "rating"],
        "slots": {"handoff_reason": {"type": "text", "influence_conversation": False, "mappings": [{"type": "custom"}]}},
        "actions": [HISTORY_ACTION, RATE_ACTION, HANDOFF_ACTION],
        "responses": responses,
        "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": True},
    }


def nlu_data(intents: Sequence[Intent], language: str = "en") -> Dict[str, Any]:
    """data/nlu.yml: each intent's training examples, and the small talk."""
    def block(texts: Sequence[str]) -> str:
        return "".join(f"- {' '.join(t.split())}\n" for t in dict.fromkeys(texts) if t.strip())

    nlu = [{"intent": i.name, "examples": block([e.text for e in i.train])} for i in intents]
    nlu += [{"intent": name, "examples": block(examples)} for name, (examples, _) in small_talk(language).items()]
    return {"version": "3.1", "nlu": nlu}


def rules(intents: Sequence[Intent], language: str = "en") -> Dict[str, Any]:
    """data/rules.yml: one rule per intent (a task's ends in the handoff), small talk, history answers
    for the rest, ratings, asking for a person."""
    steps = [(i.name, [f"utter_{i.name}"] + ([HANDOFF_ACTION] if i.kind == "task" else []), f"{i.kind} {i.name}")
             for i in intents]
    steps += [(name, [f"utter_{name}"], f"small talk {name}") for name in small_talk(language)]
    steps += [("nlu_fallback", [HISTORY_ACTION], "anything else: the closest past answer, or ask to rephrase"),
              ("rate_answer", [RATE_ACTION], "a rating button"),
              ("request_human", [HANDOFF_ACTION], "a person asked for"),
              ("leave_message", [HANDOFF_ACTION], "a message left for the team"),
              ("cancel_handoff", ["utter_nothing_to_cancel"], "nothing to cancel outside a wait")]
    return {"version": "3.1", "rules": [{"rule": title, "steps": [{"intent": intent}, *[{"action": a} for a in actions]]}
                                        for intent, actions, title in steps]}


def write_rasa_project(folder: Path, config: Dict[str, Any], intents: Sequence[Intent]) -> None:
    """config.yml, domain.yml, data/nlu.yml and data/rules.yml into `folder` (which exists)."""
    def dump(path: Path, data: Dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")

    language = str(config.get("language") or "en")
    dump(folder / "config.yml", config)
    dump(folder / "domain.yml", domain(intents, language))
    dump(folder / "data" / "nlu.yml", nlu_data(intents, language))
    dump(folder / "data" / "rules.yml", rules(intents, language))


# ------------------------------------------------------------------ training and evaluating


def train(rasa_dir: Path, out: Path) -> Path:
    """`rasa train` of the project in `rasa_dir` into folder `out`; the archive's path."""
    rasa = str(Path(sys.executable).with_name("rasa"))
    args = [rasa, "train", "--config", str(rasa_dir / "config.yml"), "--domain", str(rasa_dir / "domain.yml"),
            "--data", str(rasa_dir / "data"), "--out", str(out), "--fixed-model-name", MODEL_NAME, "--quiet"]
    result = subprocess.run(args, cwd=PROJECT_ROOT, env=project_env(), capture_output=True, text=True)
    archive = out / f"{MODEL_NAME}.tar.gz"
    if result.returncode != 0 or not archive.exists():
        tail = (result.stdout + result.stderr)[-3000:]
        raise RuntimeError(f"rasa train failed (exit {result.returncode}):\n{tail}")
    return archive


Parse = Callable[[List[str]], List[Dict[str, Any]]]


def agent_parser(model: Path) -> Parse:
    """Parse texts with the trained model in this process (the whole NLU pipeline, retrieval included)."""
    import asyncio
    import logging

    from rasa.core.agent import Agent
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)  # not a debug line per parsed message
    agent = Agent.load(str(model))

    def parse(texts: List[str]) -> List[Dict[str, Any]]:
        async def all_of() -> List[Dict[str, Any]]:
            return [await agent.parse_message(text) for text in texts]

        return asyncio.run(all_of())

    return parse


def _confident(parsed: Dict[str, Any], intents: set, retrieval_threshold: float) -> Tuple[bool, bool]:
    """(answered by an intent, answered from the index) for one parse, as the built rules would answer it."""
    intent = (parsed.get("intent") or {}).get("name")
    if intent in intents:
        return True, False
    if intent == "nlu_fallback":
        hits = (parsed.get("retrieval") or {}).get("hits") or []
        return False, bool(hits) and float(hits[0].get("score", 0.0)) >= retrieval_threshold
    return False, False


def evaluate(parse: Parse, intents: Sequence[Intent], history_held_out: Sequence[Example],
             retrieval_threshold: float) -> Dict[str, Any]:
    """Intent accuracy on the intents' held-out examples; coverage over those and the held-out rest of the history."""
    names = {i.name for i in intents}
    truth = [(i.name, e) for i in intents for e in i.held_out] + [(None, e) for e in history_held_out]
    parsed = parse([e.text for _, e in truth]) if truth else []
    correct: Dict[str, int] = {i.name: 0 for i in intents}
    by_intent = by_index = 0
    requests = []
    for (expected, example), result in zip(truth, parsed):
        predicted = (result.get("intent") or {}).get("name")
        if expected is not None and predicted == expected:
            correct[expected] += 1
        answered_by_intent, answered_by_index = _confident(result, names, retrieval_threshold)
        by_intent += answered_by_intent
        by_index += answered_by_index
        requests.append({"id": example.id, "text": example.text, "intent": expected, "predicted": predicted,
                         "confidence": round(float((result.get("intent") or {}).get("confidence") or 0.0), 3),
                         "answered": "intent" if answered_by_intent else "index" if answered_by_index else None})
    intent_total = sum(len(i.held_out) for i in intents)
    total = len(truth)
    return {
        "correct": correct,
        "intent_accuracy": sum(correct.values()) / intent_total if intent_total else None,
        "coverage": (by_intent + by_index) / total if total else None,
        "coverage_by_intent": by_intent / total if total else None,
        "coverage_by_index": by_index / total if total else None,
        "requests": requests,
    }


# ------------------------------------------------------------------ the build


def _index_records(candidates: Sequence[Tuple[Candidate, List[Example]]]) -> List[Dict[str, Any]]:
    return [{"id": e.id, "question": e.text, "answer": e.answer, "source": e.source or e.conversation or None,
             "tags": ["onboarding", c.name]}
            for c, examples in candidates if c.kind != "task" for e in examples if e.answer.strip() and e.text.strip()]


def build_index(folder: Path, records: List[Dict[str, Any]]) -> int:
    """The answer index over `records` (near-duplicates merged as training.build_index does), saved whole into `folder`."""
    from retrieval.index import AnswerIndex, as_record
    from retrieval.ingest import merge_near_duplicates

    settings = get_settings()
    parsed = []
    for raw in records:
        try:
            parsed.append(as_record(raw))
        except ValueError:  # an empty question or answer: nothing to answer from
            continue
    index = AnswerIndex(encoder=settings.encoder)
    vectors = index.encode([r.question for r in parsed])
    kept, _ = merge_near_duplicates(parsed, vectors) if parsed else ([], [])
    built = AnswerIndex.build([parsed[i] for i in kept], encoder=index.encoder_spec,
                              vectors=vectors[kept] if parsed else None)
    built.save(folder)
    return len(built)


def choose_intents(candidates: Sequence[Candidate], options: BuildOptions,
                   encode: Callable[[List[str]], np.ndarray]) -> Tuple[List[Intent], List[Dict[str, Any]]]:
    """The intents to build (with their held-out slice) and the candidates left out, with the reason."""
    intents, left_out = [], []
    for c in candidates:
        value = cohesion(encode([e.text for e in c.examples])) if c.examples else 0.0
        reason = leave_out_reason(c, value, options)
        if reason:
            left_out.append({"candidate": c.id, "name": c.name, "size": c.size, "cohesion": round(value, 3),
                             "reason": reason})
            continue
        kept, held = split_held_out(c.examples, options.holdout, options.seed, c.id)
        intents.append(Intent(c.name, c.kind, c.id, c.response.strip(), kept, held, value))
    return intents, left_out


def build(project: Path, options: Optional[BuildOptions] = None) -> Report:
    """Build, train and evaluate the assistant of onboarding project `project`; see the module docstring.

    With ``options.train`` False nothing is trained or
    evaluated: the Rasa project and the index are written, and the report
    says so. Raises `BuildError` (or `core.onboarding.ReviewError`) with what
    to do when the reviewed state cannot be built, RuntimeError when
    training fails (the previous rasa/ and models/ folders are then kept).
    """
    options = options or BuildOptions()
    options.check()
    project = Path(project).resolve()
    started = time.monotonic()
    state = OnboardingProject(project).reviewed()
    accepted = list(usable(state))
    from retrieval.index import AnswerIndex

    encoder_index = AnswerIndex(encoder=get_settings().encoder)
    intents, left_out = choose_intents(accepted, options, encoder_index.encode)
    if len(intents) < 2:
        raise BuildError(
            f"{project}: {len(intents)} usable intent(s) ({len(accepted)} accepted, {len(left_out)} left out: "
            + ("; ".join(f"{c['name']} {c['reason']}" for c in left_out) or "none")
            + "); an assistant needs at least two. Accept more candidates with `python -m training.onboard review "
            f"{project} accept ID` (or accept-all) and build again")
    built_ids = {i.candidate for i in intents}
    rest = [c for c in state.candidates if c.id not in built_ids]
    rest_kept, rest_held = [], []
    for c in rest:
        kept, held = split_held_out(c.examples, options.holdout, options.seed, c.id, at_least_one=False)
        rest_kept.append((c, kept))
        rest_held += held
    index_dir = project / "index"
    index_pairs = build_index(index_dir, _index_records(rest_kept))
    config = project_config(index_dir, options)
    timings: Dict[str, float] = {}
    notes = [f"the answer index holds {index_pairs} answered requests of the candidates not built "
             "(tasks' answers left out); the held-out requests are in neither the intents nor the index"]
    model: Optional[Path] = None
    with replacing_folder(project / "rasa") as rasa_stage:
        write_rasa_project(rasa_stage, config, intents)
        if options.train:
            with replacing_folder(project / "models") as models_stage:
                tick = time.monotonic()
                train(rasa_stage, models_stage)
                timings["train_s"] = round(time.monotonic() - tick, 1)
            model = project / "models" / f"{MODEL_NAME}.tar.gz"
    results: Dict[str, Any] = {"correct": {}, "intent_accuracy": None, "coverage": None, "coverage_by_intent": None,
                               "coverage_by_index": None, "requests": []}
    if model is not None:
        tick = time.monotonic()
        results = evaluate(agent_parser(model), intents, rest_held, get_settings().retrieval_threshold)
        timings["evaluate_s"] = round(time.monotonic() - tick, 1)
    else:
        notes.append("not trained (--no-train): no accuracy or coverage")
    timings["total_s"] = round(time.monotonic() - started, 1)
    report = Report(
        project=str(project), model=str(model) if model else None,
        intents=[{"name": i.name, "kind": i.kind, "candidate": i.candidate, "train": len(i.train),
                  "held_out": len(i.held_out), "correct": results["correct"].get(i.name), "cohesion": round(i.cohesion, 3)}
                 for i in intents],
        left_out=left_out, index_pairs=index_pairs,
        held_out={"intents": sum(len(i.held_out) for i in intents), "history": len(rest_held)},
        intent_accuracy=results["intent_accuracy"], coverage=results["coverage"],
        coverage_by_intent=results["coverage_by_intent"], coverage_by_index=results["coverage_by_index"],
        thresholds={"fallback": fallback_threshold(config), "retrieval": get_settings().retrieval_threshold},
        timings=timings, requests=results["requests"], notes=notes,
        rest_answered_by_intent=sum(1 for r in results["requests"] if r["intent"] is None and r["answered"] == "intent"),
    )
    write_report(project, report)
    return report


def write_report(project: Path, report: Report) -> None:
    state_dir = OnboardingProject(project).state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(state_dir / "report.json", json.dumps(dataclasses.asdict(report), indent=1, ensure_ascii=False))
    write_text_atomically(state_dir / "report.md", "# Onboarding build report\n\n" + report.table())


def main(argv: List[str]) -> int:
    """``python -m training.onboard build PROJECT [options]`` (argv: everything after ``build``)."""
    parser = argparse.ArgumentParser(prog="python -m training.onboard build",
                                     description="Write, train and evaluate the Rasa project of a reviewed onboarding project.")
    parser.add_argument("project", type=Path, help="the onboarding project folder (python -m training.onboard --out)")
    defaults = BuildOptions()
    parser.add_argument("--holdout", type=float, default=defaults.holdout, help="share of each intent held out for evaluation")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--min-examples", type=int, default=defaults.min_examples,
                        help="candidates with fewer examples are left out")
    parser.add_argument("--min-cohesion", type=float, default=defaults.min_cohesion,
                        help="candidates whose examples are less alike (mean cosine to their centre) are left out")
    parser.add_argument("--epochs", type=int, help="the classifier's epochs (default: config.yml's)")
    parser.add_argument("--trainable-layers", type=int, help="the classifier's trainable layers (default: config.yml's)")
    parser.add_argument("--no-train", dest="train", action="store_false", help="write the project and index only")
    args = parser.parse_args(argv)
    options = BuildOptions(holdout=args.holdout, seed=args.seed, min_examples=args.min_examples,
                           min_cohesion=args.min_cohesion, epochs=args.epochs, trainable_layers=args.trainable_layers,
                           train=args.train)
    try:
        report = build(args.project, options)
    except (BuildError, ReviewError) as exc:
        print(f"cannot build: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    print(report.table())
    print(f"written: {args.project / 'rasa'}, {args.project / 'index'}"
          + (f", {report.model}" if report.model else "") + f", {args.project / 'onboarding' / 'report.md'}")
    return 0
