"""Reading a company's helpdesk history into conversations, personal data redacted first.

`read_transcripts(folder, language)` reads every file under `folder`
(recursively, in name order; hidden files such as ``.DS_Store`` are passed
over) and returns the `Transcripts`: the conversations kept and a `Problem`
for everything skipped, each with its file and line. Formats, told apart by
the file's ending and, for JSON, by each object's shape:

- ``.txt`` transcripts and ``.jsonl`` lines ``{"id", "turns": [{"speaker",
  "text", "time"}, ...], "rating"}``: the formats the answer index reads, read
  by the same reader (`retrieval.ingest.read_transcript_txt`,
  `retrieval.ingest.transcript_from_json`; see `retrieval.ingest`); a
  transcript's ``# rating: ...`` header is its conversation's rating;
- turns one a row, in ``.csv``/``.tsv`` (a header line) or ``.jsonl``: the
  conversation's id (``conversation_id``, ``ticket_id`` or ``thread_id``), the
  speaker (``speaker``, ``role``, ``author`` or ``from``), the text (``text``,
  ``message`` or ``body``) and optionally the time (``time``, ``timestamp``
  or ``created_at``) and the conversation's rating (``rating``, on any of its
  rows; the last given counts); a conversation's turns are taken in file order;
- Zendesk tickets with their comments: a ticket object (Tickets API) with
  ``id``, ``requester_id``, optional ``satisfaction_rating`` ``{"score":
  "good"|"bad"}``, and ``comments`` as the Ticket Comments API lists them
  (``author_id``, ``plain_body``/``body``/``html_body``, ``public``,
  ``created_at``). A comment whose ``author_id`` is the ticket's
  ``requester_id`` is the customer's, any other the agents' (so a copied-in
  end user counts as an agent). Field names as Zendesk documents them:
  https://developer.zendesk.com/rest_api/docs/support/ticket_comments (comments:
  "public or private"; plain_body, html_body, author_id, created_at) and
  https://developer.zendesk.com/rest_api/docs/support/satisfaction_ratings
  (score "offered", "unoffered", "good" or "bad");
- Intercom conversations (the Conversations API's conversation model:
  https://developers.intercom.com/docs/references/1.0/rest-api/conversations/conversation-part-model
  for parts, and Intercom's own client's Conversation, ConversationSource and
  ConversationRating types, intercom-client 6.x, for the rest):
  ``id``, ``source`` ``{"body", "author": {"type"}}`` (the first message),
  ``conversation_parts`` ``{"conversation_parts": [{"part_type", "body",
  "author": {"type"}, "created_at"}]}`` and ``conversation_rating``
  ``{"rating": 1..5}``. Author types ``user``, ``lead`` and ``contact`` are the
  customer; ``admin``, ``bot`` and ``team`` the company. Bodies are HTML;
  ``created_at`` is unix seconds. Parts without a body (assignments, opening
  and closing) are events, not messages, and are passed over.

A ``.json`` file holds one such object, a list of them, or ``{"tickets":
[...]}`` / ``{"conversations": [...]}`` (also ``{"ticket": {...}}``); a
``.json`` file with one object a line is read as JSONL. Internal notes
(Zendesk ``public: false``, Intercom ``part_type`` "note") are not what the
customer saw: they are dropped (counted in the summary). HTML is reduced to
its text. Times become ISO 8601 (a time that cannot be read is left out; the
turn is kept). Ratings become 0..1: "good"/"bad", Intercom's 1..5 stars, or a
number in 0..1 (``{"rating": n}`` for stars in our own JSONL).

Each turn is redacted (`core.redaction.redact`) the moment it is read, before
anything else looks at it. Then, in this order, a conversation is skipped and
reported (kinds in `KINDS`):

- ``unknown_speaker``: a turn whose speaker is neither the customer nor an
  agent ("System", "Supervisor") is skipped and the rest of its conversation
  kept: such lines are usually the desk's own events, and dropping whole
  conversations for them would drop whole exports;
- ``no_customer_turns``: a conversation with no customer turn left;
- ``other_language``: one whose customer turns are mostly (by words) in
  another script than `language`'s (a few foreign words are fine; languages
  whose script this module does not know are not checked);
- ``duplicate``: the same turns (whitespace and case aside) as a conversation
  read before, e.g. a ticket exported twice: the first is kept.

Whole files are reported as ``empty_file`` or ``unreadable`` (binary, not
valid JSON, an object of no known shape, an unknown file type, a CSV without
the columns); unreadable lines and rows as ``unreadable``.
"""
from __future__ import annotations

import dataclasses
import datetime
import html.parser
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from core.records import RecordError, read_csv, read_jsonl
from core.redaction import PLACEHOLDER, redact
from retrieval.ingest import (Skipped, TranscriptConversation, TranscriptTurn, read_transcript_txt, speaker_role,
                              transcript_from_json, transcript_time)

EMPTY, UNREADABLE, SPEAKER = "empty_file", "unreadable", "unknown_speaker"
NO_CUSTOMER, LANGUAGE, DUPLICATE = "no_customer_turns", "other_language", "duplicate"
KINDS = (EMPTY, UNREADABLE, SPEAKER, NO_CUSTOMER, LANGUAGE, DUPLICATE)

CONVERSATION_COLUMNS = ("conversation_id", "ticket_id", "thread_id")
SPEAKER_COLUMNS = ("speaker", "role", "author", "from")
TEXT_COLUMNS = ("text", "message", "body")
TIME_COLUMNS = ("time", "timestamp", "created_at")
INTERCOM_CUSTOMERS = {"user", "lead", "contact"}
INTERCOM_COMPANY = {"admin", "bot", "team"}
# The script of each language's words (unicodedata names' first word); languages not listed are not checked.
SCRIPTS: Dict[str, Tuple[str, ...]] = {
    **{code: ("LATIN",) for code in (
        "en de fr es it pt nl sv da no nb nn fi is pl cs sk sl hr ro hu tr id ms vi ca eu gl et lv lt sq af sw tl "
        "ga cy mt").split()},
    **{code: ("CYRILLIC",) for code in "ru uk be bg mk kk ky mn".split()},
    "zh": ("CJK",), "ja": ("CJK", "HIRAGANA", "KATAKANA"), "ko": ("HANGUL",), "el": ("GREEK",), "he": ("HEBREW",),
    **{code: ("ARABIC",) for code in "ar fa ur".split()},
    **{code: ("DEVANAGARI",) for code in "hi mr ne".split()}, "th": ("THAI",),
}
_UNSPACED = {"CJK", "HIRAGANA", "KATAKANA", "THAI"}  # scripts without spaces: each letter counts as a word
_BINARY_SNIFF = 8192


@dataclasses.dataclass
class Turn:
    """One message of a conversation, redacted."""

    speaker: str  # "customer" or "agent"
    text: str
    time: Optional[str]  # ISO 8601, when the export gives a readable one
    line: int  # the line of its file it was read from


@dataclasses.dataclass
class Conversation:
    """One conversation of the history."""

    id: str  # the export's id, else "file:line"; stable across runs over the same files
    source: str  # its file, relative to the folder read
    line: int
    turns: List[Turn]
    rating: Optional[float] = None  # the customer's rating, 0 (bad) .. 1 (good)

    def customer_turns(self) -> List[Turn]:
        return [t for t in self.turns if t.speaker == "customer"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something in the history that was skipped, where it is and why."""

    source: str
    line: int
    kind: str  # one of KINDS
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclasses.dataclass
class Transcripts:
    """What reading a folder of transcripts gave: conversations kept, problems met, files read."""

    conversations: List[Conversation] = dataclasses.field(default_factory=list)
    problems: List[Problem] = dataclasses.field(default_factory=list)
    files: int = 0
    notes_dropped: int = 0  # internal notes passed over (not customer-facing)
    redacted: Counter = dataclasses.field(default_factory=Counter)  # placeholders put in, by kind ("EMAIL": 3)

    def summary(self) -> Dict[str, Any]:
        """Counts: files, conversations, turns, internal notes dropped, personal data redacted (by kind, in
        every turn read, kept or not) and what was skipped, per kind."""
        skipped = Counter(p.kind for p in self.problems)
        return {"files": self.files, "conversations": len(self.conversations),
                "turns": sum(len(c.turns) for c in self.conversations), "internal_notes_dropped": self.notes_dropped,
                "redacted": {kind: n for kind, n in sorted(self.redacted.items()) if n > 0},
                "skipped": {kind: skipped.get(kind, 0) for kind in KINDS}}


class TranscriptFolderError(FileNotFoundError):
    """The folder (or file) of transcripts named does not exist."""


# --- small readers -------------------------------------------------------------------------------------


class _TextOfHtml(html.parser.HTMLParser):
    _BREAKS = {"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: List[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._BREAKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        self.handle_starttag(tag, None)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(markup: str) -> str:
    """The text of an HTML fragment (``<p>Hi &amp; bye</p>`` -> "Hi & bye"), whitespace collapsed."""
    reader = _TextOfHtml()
    reader.feed(markup)
    reader.close()
    return " ".join("".join(reader.parts).split())


def iso_time(value: Any, date: Optional[str] = None) -> Optional[str]:
    """`value` as an ISO 8601 time: ISO text (a trailing Z allowed), unix seconds or milliseconds, or a bare
    "10:02" on `date`; None when it is none of those."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or re.fullmatch(r"\d{9,13}(\.\d+)?", str(value).strip()):
        seconds = float(value)
        seconds = seconds / 1000 if seconds > 1e11 else seconds
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()
    text = transcript_time(str(value).strip(), date) or ""
    try:
        return datetime.datetime.fromisoformat(re.sub(r"Z$", "+00:00", text)).isoformat()
    except ValueError:
        return None


def rating_score(value: Any) -> Optional[float]:
    """A rating as 0..1: "good"/"bad" (also Zendesk's ``{"score"}``), stars 1..5 (Intercom's ``{"rating"}``,
    or a number above 1), or a number in 0..1. None for no rating ("offered", "unoffered", null).
    Raises ValueError for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        if "score" in value:
            return rating_score(value["score"])
        if "rating" in value:
            stars = value["rating"]
            if stars is None:
                return None
            if isinstance(stars, (int, float)) and not isinstance(stars, bool) and 1 <= stars <= 5:
                return (float(stars) - 1) / 4
        raise ValueError(f"rating {value!r} not understood")
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("good", "up", "positive"):
            return 1.0
        if word in ("bad", "down", "negative"):
            return 0.0
        if word in ("offered", "unoffered"):
            return None
        try:
            value = float(word)
        except ValueError:
            raise ValueError(f"rating {value!r} not understood (expected good/bad, 0..1 or 1..5 stars)") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 <= value <= 1:
            return float(value)
        if 1 < value <= 5:
            return (float(value) - 1) / 4
    raise ValueError(f"rating {value!r} not understood (expected good/bad, 0..1 or 1..5 stars)")


def script_words(text: str) -> Counter:
    """How many words of `text` are in each script (LATIN, CYRILLIC, CJK, ...); in scripts written without
    spaces each letter counts as a word. Redaction placeholders are not counted."""
    counts: Counter = Counter()
    previous = None
    for ch in unicodedata.normalize("NFKC", PLACEHOLDER.sub(" ", text)):
        if not ch.isalpha():
            previous = None
            continue
        script = unicodedata.name(ch, "UNKNOWN").split(" ")[0]
        if script in _UNSPACED or script != previous:
            counts[script] += 1
        previous = script
    return counts


def in_language(texts: Sequence[str], language: str) -> bool:
    """Whether most words of `texts` are in `language`'s script (always True for a language of unknown script)."""
    scripts = SCRIPTS.get(language.strip().lower().replace("_", "-").split("-")[0])
    if scripts is None:
        return True
    counts = script_words(" ".join(texts))
    total = sum(counts.values())
    return total == 0 or sum(counts[s] for s in scripts) * 2 > total


# --- one file into raw conversations -------------------------------------------------------------------

# A conversation as read (text not yet redacted) with its rating as written, or a problem at (line, kind, message).
_Raw = Tuple[TranscriptConversation, Any]
_Found = Union[_Raw, Tuple[int, str, str]]


class _File:
    """What one file gave: raw conversations and problems (line, kind, message), and notes dropped."""

    def __init__(self) -> None:
        self.found: List[_Found] = []
        self.notes = 0
        self._rows: Dict[str, TranscriptConversation] = {}  # turn rows grouped by conversation id

    def problem(self, line: int, kind: str, message: str) -> None:
        self.found.append((line, kind, message))

    def conversation(self, conversation: TranscriptConversation, rating: Any = None) -> None:
        """A conversation read; its rating as written (else the ``rating`` of its fields, read when it is done)."""
        self.found.append((conversation, rating))

    def turn_row(self, row: Dict[str, Any], line: int) -> None:
        """One turn of a turns-a-row file, added to its conversation (the first row places it in the file)."""
        lowered = {str(k).strip().lower(): v for k, v in row.items()}
        conversation_id, label, text = (next((lowered[c] for c in columns if lowered.get(c) not in (None, "")), None)
                                        for columns in (CONVERSATION_COLUMNS, SPEAKER_COLUMNS, TEXT_COLUMNS))
        if conversation_id is None or not isinstance(text, str) or not text.strip():
            self.problem(line, UNREADABLE, "row needs a conversation id (conversation_id, ticket_id or thread_id), "
                                           "a speaker and text")
            return
        speaker = speaker_role(str(label or ""))
        if speaker is None:
            self.problem(line, SPEAKER, f"unknown speaker {label!r} (expected customer or agent); turn skipped")
            return
        time = next((lowered[c] for c in TIME_COLUMNS if lowered.get(c) not in (None, "")), None)
        key = str(conversation_id)
        if key not in self._rows:
            self._rows[key] = TranscriptConversation(id=key, line=line, turns=[])
            self.conversation(self._rows[key])
        self._rows[key].turns.append(TranscriptTurn(speaker, text.strip(), time, line, f"{line}"))
        if lowered.get("rating") not in (None, ""):
            self._rows[key].fields["rating"] = lowered["rating"]

    def json_object(self, item: Any, line: int) -> None:
        """One JSON object of any known shape."""
        if not isinstance(item, dict):
            self.problem(line, UNREADABLE, f"expected a JSON object, found {type(item).__name__}")
        elif "comments" in item or "requester_id" in item:
            self._zendesk(item, line)
        elif "conversation_parts" in item or (item.get("type") == "conversation" and "source" in item):
            self._intercom(item, line)
        elif "turns" in item:
            read = transcript_from_json(item, Path(""), line)
            for skipped in read.skipped:
                turn = skipped.location.partition(" turn ")[2]
                self.problem(line, SPEAKER if skipped.kind == "speaker" else UNREADABLE,
                             f"turn {turn}: {skipped.reason}" if turn else skipped.reason)
            if read.conversation is not None:
                self.conversation(read.conversation, item.get("rating"))
        elif any(c in item for c in SPEAKER_COLUMNS) and any(c in item for c in TEXT_COLUMNS):
            self.turn_row(item, line)
        else:
            self.problem(line, UNREADABLE, "not a conversation, a turn, a Zendesk ticket or an Intercom "
                                           f"conversation (keys: {', '.join(sorted(map(str, item))[:8])})")

    def _zendesk(self, ticket: Dict[str, Any], line: int) -> None:
        requester, comments = ticket.get("requester_id"), ticket.get("comments")
        if requester is None or not isinstance(comments, list):
            self.problem(line, UNREADABLE, "Zendesk ticket needs 'requester_id' and its 'comments' (a list, as the "
                                           "Ticket Comments API returns them)")
            return
        turns: List[TranscriptTurn] = []
        for position, comment in enumerate(comments, start=1):
            if not isinstance(comment, dict):
                self.problem(line, UNREADABLE, f"comment {position} is not an object")
                continue
            if comment.get("public") is False:
                self.notes += 1
                continue
            text = comment.get("plain_body") or comment.get("body") or html_text(str(comment.get("html_body") or ""))
            if not isinstance(text, str) or not text.strip():
                continue  # an attachment alone: nothing to read
            speaker = "customer" if str(comment.get("author_id")) == str(requester) else "agent"
            turns.append(TranscriptTurn(speaker, text.strip(), comment.get("created_at"), line, f"{line}"))
        ticket_id = ticket.get("id")
        self.conversation(TranscriptConversation(id="" if ticket_id is None else str(ticket_id), line=line,
                                                 turns=turns, date=ticket.get("created_at")),
                          ticket.get("satisfaction_rating"))

    def _intercom(self, item: Dict[str, Any], line: int) -> None:
        source = item.get("source") if isinstance(item.get("source"), dict) else {}
        parts = item.get("conversation_parts")
        parts = parts.get("conversation_parts") if isinstance(parts, dict) else parts
        if not isinstance(parts, list):
            parts = []
        turns: List[TranscriptTurn] = []
        messages = [{**source, "part_type": "comment", "created_at": source.get("created_at", item.get("created_at"))}]
        for position, part in enumerate(messages + parts):
            if not isinstance(part, dict):
                self.problem(line, UNREADABLE, f"conversation part {position} is not an object")
                continue
            if str(part.get("part_type") or "").startswith("note"):
                self.notes += 1
                continue
            text = html_text(str(part.get("body") or ""))
            if not text:
                continue  # an event (assignment, open, close) or an attachment alone
            author = part.get("author") if isinstance(part.get("author"), dict) else {}
            kind = str(author.get("type") or "").lower()
            speaker = "customer" if kind in INTERCOM_CUSTOMERS else "agent" if kind in INTERCOM_COMPANY else None
            if speaker is None:
                where = "source" if position == 0 else f"conversation part {position}"
                self.problem(line, SPEAKER, f"{where}: unknown author type {kind!r} (expected user, lead, contact, "
                                            f"admin, bot or team); turn skipped")
                continue
            turns.append(TranscriptTurn(speaker, text, part.get("created_at"), line, f"{line}"))
        conversation_id = item.get("id")
        self.conversation(TranscriptConversation(id="" if conversation_id is None else str(conversation_id),
                                                 line=line, turns=turns), item.get("conversation_rating"))


def _located(text: str, items: List[Any], opening: Optional["re.Match[str]"]) -> List[Tuple[int, Any]]:
    """Each item of a JSON array with the line it starts on (line 1 for all when they cannot be placed)."""
    if opening is not None:
        decoder, position, found = json.JSONDecoder(), opening.end(), []
        try:
            for _ in items:
                position = re.compile(r"[\s,]*").match(text, position).end()
                _, end = decoder.raw_decode(text, position)
                found.append(text.count("\n", 0, position) + 1)
                position = end
            return list(zip(found, items))
        except ValueError:
            pass
    return [(1, item) for item in items]


def _json_document(text: str, into: _File) -> None:
    try:
        data = json.loads(text)
    except RecursionError:
        into.problem(1, UNREADABLE, "not valid JSON (nested too deeply)")
        return
    except ValueError as exc:
        if getattr(exc, "msg", "") == "Extra data":  # one object a line: JSONL named .json
            _jsonl_lines(text.splitlines(), into)
        else:
            into.problem(getattr(exc, "lineno", 1), UNREADABLE, f"not valid JSON ({getattr(exc, 'msg', exc)})")
        return
    items: List[Tuple[int, Any]] = [(1, data)]
    if isinstance(data, list):
        items = _located(text, data, re.match(r"\s*\[", text))
    elif isinstance(data, dict):
        for key in ("tickets", "conversations"):
            if isinstance(data.get(key), list):
                items = _located(text, data[key], re.search(rf'"{key}"\s*:\s*\[', text))
                break
        else:
            for key in ("ticket", "conversation"):
                if isinstance(data.get(key), dict):
                    items = [(1, data[key])]
    for line, item in items:
        into.json_object(item, line)


def _jsonl_lines(lines: Sequence[str], into: _File) -> None:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except RecursionError:
            into.problem(number, UNREADABLE, "not valid JSON (nested too deeply)")
            continue
        except ValueError as exc:
            into.problem(number, UNREADABLE, f"not valid JSON ({getattr(exc, 'msg', exc)})")
            continue
        into.json_object(item, number)


def _read_file(path: Path) -> _File:
    found = _File()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        found.problem(1, UNREADABLE, f"cannot read ({exc.strerror or exc})")
        return found
    if not raw.strip():
        found.problem(1, EMPTY, "empty file")
        return found
    if b"\x00" in raw[:_BINARY_SNIFF]:
        found.problem(1, UNREADABLE, "a binary file, not a transcript")
        return found
    suffix = path.suffix.lower()
    if suffix == ".txt":
        for item in read_transcript_txt(path):
            if isinstance(item, Skipped):
                line = int(item.location.rsplit(":", 1)[1])
                found.problem(line, SPEAKER if item.kind == "speaker" else UNREADABLE, item.reason)
            else:
                found.conversation(item)
    elif suffix in (".csv", ".tsv"):
        rows = read_csv(path, required=(CONVERSATION_COLUMNS, SPEAKER_COLUMNS, TEXT_COLUMNS), errors="yield")
        for number, row in rows:
            if isinstance(row, RecordError):
                found.problem(row.line or 1, UNREADABLE, row.problem)
            else:
                found.turn_row(row, number)
    elif suffix in (".jsonl", ".ndjson"):
        for number, row in read_jsonl(path, errors="yield"):
            if isinstance(row, RecordError):
                found.problem(row.line or 1, UNREADABLE, row.problem)
            else:
                found.json_object(row, number)
    elif suffix == ".json":
        _json_document(raw.decode("utf-8-sig", errors="replace"), found)
    else:
        found.problem(1, UNREADABLE, f"unknown file type '{suffix or path.name}' (expected .txt, .csv, .tsv, "
                                     f".jsonl or .json)")
    return found


# --- the folder ------------------------------------------------------------------------------------------


def _files(folder: Path) -> Tuple[Path, List[Path]]:
    if folder.is_file():
        return folder.parent, [folder]
    if not folder.is_dir():
        raise TranscriptFolderError(f"{folder}: no such folder (or file) of transcripts")
    return folder, sorted(p for p in folder.rglob("*")
                          if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _redacted(raw: TranscriptConversation, counts: Counter) -> List[Turn]:
    turns = []
    for turn in raw.turns:
        text = " ".join(redact(turn.text).split())
        counts.update(m.group(0)[1:-1] for m in PLACEHOLDER.finditer(text))
        counts.subtract(m.group(0)[1:-1] for m in PLACEHOLDER.finditer(turn.text))  # there before redaction
        if text:
            turns.append(Turn(turn.speaker, text, iso_time(turn.time, raw.date), turn.line))
    return turns


def _fingerprint(turns: Sequence[Turn]) -> Tuple[Tuple[str, str], ...]:
    return tuple((t.speaker, " ".join(t.text.casefold().split())) for t in turns)


def read_transcripts(folder: Path, language: str = "en") -> Transcripts:
    """Read every transcript file under `folder` (or the one file `folder` names); see the module's docstring.

    Raises `TranscriptFolderError` when `folder` does not exist; everything
    wrong inside it is a `Problem` in the result, never an exception.
    """
    root, paths = _files(Path(folder))
    result = Transcripts(files=len(paths))
    seen: Dict[Tuple[Tuple[str, str], ...], Conversation] = {}
    ids: set = set()
    for path in paths:
        source = path.relative_to(root).as_posix()
        found = _read_file(path)
        result.notes_dropped += found.notes
        for item in found.found:
            if not isinstance(item[0], TranscriptConversation):
                line, kind, message = item
                result.problems.append(Problem(source, line, kind, message))
                continue
            raw, rating = item
            rating = raw.fields.get("rating") if rating is None else rating
            problem, conversation = _conversation(raw, rating, source, language, seen, ids, result.redacted)
            if problem is not None:
                result.problems.append(problem)
            if conversation is not None:
                result.conversations.append(conversation)
    return result


def _conversation(raw: TranscriptConversation, rating: Any, source: str, language: str,
                  seen: Dict[Tuple[Tuple[str, str], ...], Conversation], ids: set,
                  redacted: Counter) -> Tuple[Optional[Problem], Optional[Conversation]]:
    """The conversation `raw` redacted and checked: (a problem, the conversation when it is kept)."""
    turns = _redacted(raw, redacted)
    where = f"conversation {raw.id}" if raw.id else "conversation"
    customer = [t.text for t in turns if t.speaker == "customer"]
    if not customer:
        return Problem(source, raw.line, NO_CUSTOMER, f"{where} has no customer turns; skipped"), None
    if not in_language(customer, language):
        scripts = ", ".join(s.lower() for s, _ in script_words(" ".join(customer)).most_common(2))
        return Problem(source, raw.line, LANGUAGE, f"{where} is not in the project's language '{language}' "
                                                   f"(customer turns mostly in {scripts} script); skipped"), None
    key = _fingerprint(turns)
    if key in seen:
        first = seen[key]
        return Problem(source, raw.line, DUPLICATE, f"{where} repeats conversation {first.id} "
                                                    f"({first.source}:{first.line}); skipped"), None
    problem = None
    try:
        score = rating_score(rating)
    except ValueError as exc:
        score = None
        problem = Problem(source, raw.line, UNREADABLE, f"{where}: {exc}; read without a rating")
    conversation_id = raw.id or f"{source}:{raw.line}"
    if conversation_id in ids:  # the same id for a different conversation: tell them apart by place
        conversation_id = f"{source}:{raw.line}#{conversation_id}"
    ids.add(conversation_id)
    conversation = Conversation(conversation_id, source, raw.line, turns, score)
    seen[key] = conversation
    return problem, conversation
