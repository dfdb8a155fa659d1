"""The customers' requests in a history of conversations, and the agents' answers that resolved them.

`find_requests(conversations, language, encoder)` walks each conversation
(`training.onboard.transcripts.Conversation`, already redacted) and returns a
`Request` for:

- the *opening* request: the first customer turn(s) that say something.
  Consecutive customer turns are one message; pure greetings in it ("hi",
  "hello there", "are you there?") are left out of its text, and a message
  that is only a greeting or a thank-you is no request;
- each *later new request*: a customer message after an agent's answer that
  starts a new topic: it opens with a cue ("also", "another question", "one
  more thing", "by the way", ...; the cue is left out of the request's text),
  or, when an `encoder` is given (`core.encoder.load_encoder`), its
  similarity both to the current request and to the agent's message just
  before is below `new_topic_below` (a reply to an agent's question, a
  message of fewer than three words, a thank-you or a complaint never starts one). Other
  customer messages are follow-ups of the current request. (With the bundled
  encoder follow-ups score 0.28 to 0.68 against the request or the answer
  before, unrelated new questions 0.02 to 0.38, on a handful of synthetic
  banking exchanges: 0.25 keeps follow-ups, and misses some new topics that
  came without a cue.)

The answer of a request is the agent's message after it, before the next
request, that the customer reacted to: the last one before their last
thanks or confirmation, else the last one (agent pleasantries such as "You're
welcome" or "Anything else?" left out). The request is *resolved* when,
after that answer, the customer thanks or confirms; not resolved when they
complain ("that didn't help", "still not working") or the conversation was
rated low; otherwise resolved when the rating is high, the conversation ends
there, or the customer moves on to another request. A request without an
answer is not resolved. `Request.evidence` says why, in words.

The cue lists (greetings, thanks, complaints, new-topic cues, agent
pleasantries) are English and apply only when `language` is English
(`core.language.is_english`), as `nlu.frustration` does; in another language
new requests come from the encoder alone and resolution from the rating and
the conversation's shape.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.language import is_english
from retrieval.ingest import MIN_QUESTION_WORDS, question_words
from training.onboard.transcripts import Conversation, Turn

NEW_TOPIC_BELOW = 0.25  # cosine to the current request and to the answer before, below which a message is new
HIGH_RATING, LOW_RATING = 0.75, 0.25

# --- English cue lists (applied only when the language is English) ---------------------------------------
GREETING_EN = re.compile(
    r"\b(hi|hello|hey|hiya|howdy|greetings|good (morning|afternoon|evening|day)|there|team|all|everyone|again|"
    r"(is )?(anyone|anybody|someone|somebody) (there|here)|are you there)\b|\[NAME\]")
THANKS_EN = re.compile(
    r"\b(thanks?( you)?|thank ?you|thx|ty|cheers|much appreciated|appreciated?( it| that)?|many thanks|"
    r"that (worked|works|helped|did it|did the trick|fixed it|solved it|sorted it)|it works( now)?|"
    r"(it'?s )?working now|all (good|sorted|set)|sorted|perfect|great|brilliant|awesome|excellent|got it|"
    r"ok(ay)?|understood|makes sense|(that'?s|that is) (all|everything|helpful)|done|resolved|fixed|"
    r"nothing else|bye|goodbye|have a (nice|good|great|lovely) (day|evening|weekend))\b")
COMPLAINT_EN = re.compile(
    r"\b(did ?n'?t|did not|does ?n'?t|does not|has ?n'?t|has not|is ?n'?t|is not|not|wo ?n'?t|still not|never)\s+"
    r"(help|helped|helping|work|works|working|fix|fixed|solve|solved|answer|answered)\b|"
    r"\bstill (not|does ?n'?t|is ?n'?t|ca ?n'?t|wo ?n'?t|no|broken|the same|having|getting|waiting|declined|blocked)\b|"
    r"\bnot what i (asked|wanted|meant)\b|\b(that'?s|this is|it'?s) (wrong|not right|incorrect)\b|"
    r"\bsame (problem|issue|error)\b|\bno luck\b|\bnot (resolved|sorted|fixed)\b|\b(useless|unhelpful)\b|"
    r"\bdoes ?n'?t make sense\b")
NEW_TOPIC_EN = re.compile(
    r"(?:^|[.!?]\s*|,\s*)(also|and also|plus|another (question|thing|issue)|one more (thing|question)|"
    r"i (also )?have (another|a different|one more) (question|issue|thing)|separately|unrelated|"
    r"on (another|a different) (note|topic|subject)|different (question|topic)|while i have you|oh and|"
    r"by the way|btw|something else|additionally|one other thing)\b[\s,:;.!-]*")
GRATITUDE_EN = re.compile(
    r"\b(thanks?|thank ?you|thx|cheers|appreciated?|that (worked|works|helped|did it|did the trick|fixed it|solved it|"
    r"sorted it)|it works( now)?|(it'?s )?working now)\b")
PLEASANTRY_EN = re.compile(
    r"\b(you'?re (very |most )?welcome|no problem|my pleasure|happy to help|glad (i could|to) help|"
    r"(is there )?anything else( i can (help|do)( you)?( with)?)?|have a (nice|good|great|lovely) (day|evening|"
    r"weekend)|hello|hi|how (can|may) i help( you)?( today)?|thanks? (you )?for (contacting|reaching out|"
    r"getting in touch|your patience|waiting|your message)( us)?|bye|goodbye|take care)\b|\[NAME\]")
FILLER_EN = {"yes", "yeah", "yep", "so", "much", "very", "really", "it", "that", "that's", "now", "and", "oh", "you",
             "again", "for", "the", "help", "your", "all", "a", "lot", "there", "today", "us", "with", "me", "i",
             "is", "just", "ok", "okay"}
_WORD = re.compile(r"[a-z0-9']+")


@dataclasses.dataclass
class Request:
    """One customer request of the history and what answered it."""

    id: str  # f"{conversation id}/{index of its first turn}", stable across runs
    conversation: str
    source: str  # "file:line" of its first turn
    text: str
    answer: str = ""  # the agent's answer that resolved it ("" when none)
    resolved: bool = False
    opening: bool = False  # the conversation's first request
    rating: Optional[float] = None  # the conversation's rating, 0..1
    evidence: List[str] = dataclasses.field(default_factory=list)
    agent_turns: int = 0  # agent messages (pleasantries aside) before the next request: 1 for a plain answer,
    # more where the agent asked for details first (an order number) or tried again


def _rest_words(text: str, pattern: "re.Pattern[str]") -> List[str]:
    """The words of `text` (lower-cased) that neither `pattern` nor the filler words account for."""
    return [w for w in _WORD.findall(pattern.sub(" ", text.lower())) if w not in FILLER_EN]


def is_greeting(text: str, english: bool) -> bool:
    """A message that is only a greeting ("hi", "hello there", "are you there?"): English only."""
    return english and not _rest_words(text, GREETING_EN)


def is_acknowledgement(text: str, english: bool) -> bool:
    """A thank-you or confirmation with nothing more ("thanks, that worked", "Perfect thank you")."""
    if english:
        return bool(THANKS_EN.search(text.lower())) and not _rest_words(text, re.compile(
            f"{THANKS_EN.pattern}|{GREETING_EN.pattern}"))
    return False


def is_pleasantry(text: str, english: bool) -> bool:
    """An agent's message that answers nothing ("You're welcome!", "Anything else I can help with?")."""
    return english and not _rest_words(text, PLEASANTRY_EN)


def _asks(text: str, english: bool) -> bool:
    """Whether an agent's message ends by asking the customer something ("Which card is it?"), pleasantries
    such as "Anything else I can help with?" aside."""
    sentences = [s for s in re.split(r"(?<=[.!?？])\s+", text.strip()) if s and not is_pleasantry(s, english)]
    return bool(sentences) and sentences[-1].rstrip().endswith(("?", "？"))


def _feedback(text: str, english: bool) -> Optional[str]:
    """"complaint", "thanks" (a thank-you, or a confirmation with nothing more) or None, for a customer's
    message after an answer (English only)."""
    lowered = text.lower()
    if not english or not lowered.strip():
        return None
    if COMPLAINT_EN.search(lowered):
        return "complaint"
    return "thanks" if GRATITUDE_EN.search(lowered) or is_acknowledgement(text, english) else None


@dataclasses.dataclass
class _Block:
    """Consecutive turns of one speaker: one message."""

    speaker: str
    turns: List[Tuple[int, Turn]]  # (index in the conversation, turn)

    @property
    def text(self) -> str:
        return " ".join(t.text for _, t in self.turns)


def _blocks(conversation: Conversation) -> List[_Block]:
    blocks: List[_Block] = []
    for index, turn in enumerate(conversation.turns):
        if blocks and blocks[-1].speaker == turn.speaker:
            blocks[-1].turns.append((index, turn))
        else:
            blocks.append(_Block(turn.speaker, [(index, turn)]))
    return blocks


def _content(block: _Block, english: bool) -> List[Tuple[int, Turn]]:
    """The turns of a customer message that say something: greetings and thank-yous left out."""
    turns = [(i, t) for i, t in block.turns if not is_greeting(t.text, english) and not is_acknowledgement(t.text, english)]
    if english:
        return [(i, t) for i, t in turns if _WORD.search(t.text.lower())]
    return turns if question_words(" ".join(t.text for _, t in turns)) >= MIN_QUESTION_WORDS else []


@dataclasses.dataclass
class _Open:
    """A request being followed: its turns, the agent messages and customer reactions since."""

    first: Tuple[int, Turn]
    text: str
    opening: bool
    why: str
    vector: Optional[np.ndarray]
    events: List[Tuple[str, Any]] = dataclasses.field(default_factory=list)  # ("answer", _Block) / ("thanks"|"complaint", Turn)


def _where(conversation: Conversation, turn: Turn) -> str:
    return f"{conversation.source}:{turn.line}"


def _close(current: _Open, conversation: Conversation, last: bool, english: bool) -> "Request":
    """The request `current` with its answer and whether it was resolved, and why."""
    index, turn = current.first
    request = Request(id=f"{conversation.id}/{index}", conversation=conversation.id, source=_where(conversation, turn),
                      text=current.text, opening=current.opening, rating=conversation.rating, evidence=[current.why])
    answers = [(n, e[1]) for n, e in enumerate(current.events) if e[0] == "answer"]
    request.agent_turns = len(answers)
    thanks = [n for n, e in enumerate(current.events) if e[0] == "thanks"]
    if not answers:
        request.evidence.append("no agent answered it")
        return request
    thanked = [n for n in thanks if n > answers[0][0]]
    position, block = max(((n, b) for n, b in answers if not thanked or n < thanked[-1]), key=lambda a: a[0])
    request.answer = " ".join(t.text for _, t in block.turns if not is_pleasantry(t.text, english)) or block.text
    after = [e for e in current.events[position + 1:] if e[0] != "answer"]
    rating = conversation.rating
    if after and after[-1][0] == "complaint":
        request.evidence.append(f"not resolved: after the answer the customer said {after[-1][1].text!r} "
                                f"({_where(conversation, after[-1][1])})")
    elif after:
        request.resolved = True
        request.evidence.append(f"resolved: after the answer the customer said {after[-1][1].text!r} "
                                f"({_where(conversation, after[-1][1])})")
    elif rating is not None and rating <= LOW_RATING:
        request.evidence.append(f"not resolved: the conversation was rated {rating:.2f} (0..1)")
    elif rating is not None and rating >= HIGH_RATING:
        request.resolved = True
        request.evidence.append(f"resolved: the conversation was rated {rating:.2f} (0..1)")
    else:
        request.resolved = True
        request.evidence.append("resolved: the conversation ended after the answer without a complaint" if last else
                                "resolved: the customer moved on to another request without a complaint")
    return request


def _new_topic(text: str, english: bool, similarity: Optional[float], after_question: bool,
               threshold: float) -> Tuple[Optional[str], str, str]:
    """(why it is a new request or None, the text before the cue, the request's text)."""
    cue = NEW_TOPIC_EN.search(text.lower()) if english else None
    if cue:
        return f"new request: the customer said {cue.group(1)!r}", text[:cue.start()], text[cue.end():].strip()
    if (similarity is not None and similarity < threshold and not after_question
            and question_words(text) >= MIN_QUESTION_WORDS and not is_acknowledgement(text, english)
            and not (english and COMPLAINT_EN.search(text.lower()))):
        return (f"new request: similarity {similarity:.2f} to the request and the answer before is below {threshold}",
                text, text)
    return None, text, text


def _requests_of(conversation: Conversation, english: bool, vectors: Dict[int, np.ndarray],
                 threshold: float) -> List[Request]:
    found: List[Request] = []
    current: Optional[_Open] = None
    pending: Optional[str] = None  # a new request announced ("one more thing") whose question is still to come
    previous_agent: Optional[_Block] = None
    for block in _blocks(conversation):
        if block.speaker == "agent":
            answers = not all(is_pleasantry(t.text, english) for _, t in block.turns)
            if current is not None and pending is None and answers:
                current.events.append(("answer", block))
            previous_agent = block
            continue
        content = _content(block, english)
        vector = vectors.get(block.turns[0][0])
        if current is None or pending is not None:
            if content:
                if current is not None:
                    found.append(_close(current, conversation, last=False, english=english))
                why = pending or "opening request: the customer's first message that says something"
                current = _Open(content[0], " ".join(t.text for _, t in content), current is None and not found, why,
                                vector)
                pending = None
            continue
        similarity = None
        if vector is not None and current.vector is not None:
            before_vector = vectors.get(previous_agent.turns[0][0]) if previous_agent is not None else None
            similarity = max(float(np.dot(vector, v)) for v in (current.vector, before_vector) if v is not None)
        after_question = previous_agent is not None and _asks(previous_agent.text, english)
        why, before, rest = _new_topic(block.text, english, similarity, after_question, threshold)
        feedback = _feedback(before, english)
        if feedback is not None:
            current.events.append((feedback, block.turns[0][1]))
        if why is None:
            continue
        if not _WORD.search(rest.lower()):
            pending = why  # "one more thing" alone: the request is the customer's next message
            continue
        found.append(_close(current, conversation, last=False, english=english))
        current = _Open(block.turns[0], rest or block.text, False, why, vector)
    if current is not None:
        found.append(_close(current, conversation, last=True, english=english))
    return found


def find_requests(conversations: Sequence[Conversation], language: str = "en", encoder: Any = None,
                  new_topic_below: float = NEW_TOPIC_BELOW) -> List[Request]:
    """The requests of `conversations` in order, each with its answer and whether it was resolved (module docstring).

    `encoder`: a sentence encoder (``encode(texts, normalize_embeddings=True)``)
    to tell new topics by similarity; without it only cue phrases do.
    """
    english = is_english(language)
    vectors: List[Dict[int, np.ndarray]] = [{} for _ in conversations]
    if encoder is not None:
        keys = [(n, block.turns[0][0], block.text) for n, c in enumerate(conversations) for block in _blocks(c)]
        if keys:
            encoded = np.asarray(encoder.encode([k[2] for k in keys], batch_size=64, normalize_embeddings=True))
            for (n, index, _), vector in zip(keys, encoded):
                vectors[n][index] = vector
    return [r for n, c in enumerate(conversations) for r in _requests_of(c, english, vectors[n], new_topic_below)]
