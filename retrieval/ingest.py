"""Reading the history of answered questions into records for `AnswerIndex`.

Sources:

- question/answer files: JSONL (one object a line with ``question``,
  ``answer`` and optional ``id``, ``source``, ``tags``, ``updated_at``) or CSV
  with a header naming the same columns;
- transcripts of conversations between a customer and an agent: ``.txt``
  files with one turn a line (``Customer: ...`` / ``Agent: ...``, optionally
  starting with ``[2024-03-01 10:02]``; ``# date: 2024-03-01`` sets the date
  of the conversation, other ``#`` lines are comments; a blank line or
  ``---`` separates conversations), or
  JSONL with one conversation a line: ``{"id": ..., "updated_at": ...,
  "turns": [{"speaker": "customer", "text": ...}, ...]}``. What the customer
  says (consecutive customer lines joined) followed by the agent's reply
  becomes one question/answer pair.

`read_transcript_txt` and `transcript_from_json` are the one reader of these
transcript formats: they yield `TranscriptConversation`s (turns with speaker,
text, time and line, as written) that this module pairs into questions and
answers and that `training.onboard.transcripts` reads a company's history
with. A speaker label is read by `speaker_role`.

Personal data is redacted (`core.redaction.redact`) as each pair is read,
before anything is embedded or stored. Near-duplicate questions are merged
keeping the newest answer (`merge_near_duplicates`). Everything skipped is
reported with its file, line and reason; nothing else is dropped.
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from core.language import CJK_RUN, words
from core.records import RecordError, read_csv, read_jsonl, read_lines
from core.redaction import find_personal_data, redact
from retrieval.index import AnswerRecord, as_record, timestamp_key

QA_SUFFIXES = {".jsonl", ".csv"}
TRANSCRIPT_SUFFIXES = {".txt", ".jsonl"}
CUSTOMER_LABELS = {"customer", "client", "user", "caller", "member", "cust", "visitor", "requester", "end-user", "end user"}
AGENT_LABELS = {"agent", "advisor", "adviser", "staff", "support", "bank", "operator", "rep", "assistant", "colleague", "admin"}
MIN_QUESTION_WORDS = 3  # words as `question_words` counts them

_TURN = re.compile(r"^\s*(?:\[(?P<ts>[^\]]+)\]\s*)?(?P<speaker>[A-Za-z][A-Za-z .'-]{0,30}?)\s*:\s*(?P<text>.*)$")
_HEADER = re.compile(r"^\s*#\s*(?P<key>[\w -]+?)\s*:\s*(?P<value>.*?)\s*$")


def question_words(question: str) -> int:
    """How many words `question` has: pieces between spaces, or, in text with Chinese or Japanese
    characters (written without spaces), `core.language.words` (character bigrams)."""
    return len(words(question)) if CJK_RUN.search(question) else len(question.split())


@dataclasses.dataclass(frozen=True)
class Skipped:
    """Something in the input that did not become a record, and why."""

    location: str  # file:line
    reason: str
    kind: str = ""  # "speaker" for a turn whose speaker label is not a customer's or an agent's


@dataclasses.dataclass
class IngestReport:
    """What reading the history produced: records, skipped lines and redactions."""

    records: List[AnswerRecord] = dataclasses.field(default_factory=list)
    skipped: List[Skipped] = dataclasses.field(default_factory=list)
    redactions: Counter = dataclasses.field(default_factory=Counter)
    sources: Counter = dataclasses.field(default_factory=Counter)  # pairs read per file
    _order: List[Tuple[float, int]] = dataclasses.field(default_factory=list)

    def add(self, raw: dict, location: str) -> None:
        """Turn `raw` into a redacted record, or note why it was skipped."""
        found = find_personal_data(str(raw.get("question") or "")) + find_personal_data(str(raw.get("answer") or ""))
        try:
            record = as_record(raw)
        except ValueError as exc:
            self.skip(location, str(exc))
            return
        if question_words(record.question) < MIN_QUESTION_WORDS:
            self.skip(location, f"question too short to answer from ({record.question!r})")
            return
        self.redactions.update(item.kind for item in found)
        self.records.append(dataclasses.replace(record, source=record.source or location.rsplit(":", 1)[0]))
        self.sources[location.rsplit(":", 1)[0]] += 1

    def skip(self, location: str, reason: str, kind: str = "") -> None:
        """Record that the line at `location` was skipped for `reason`."""
        self.skipped.append(Skipped(location, reason, kind))

    def summary(self) -> str:
        """A short human-readable account: counts, redactions and every skipped line."""
        lines = [f"read {len(self.records)} question/answer pairs from {len(self.sources)} files"]
        if self.redactions:
            lines.append("redacted: " + ", ".join(f"{n} {kind.lower()}" for kind, n in sorted(self.redactions.items())))
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)}:")
            lines += [f"  {s.location}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def _qa_jsonl(path: Path, report: IngestReport) -> None:
    for number, row in read_jsonl(path, errors="yield"):
        if isinstance(row, RecordError):
            report.skip(row.location, row.problem)
        elif "turns" in row:
            found = transcript_from_json(row, path, number)
            for skipped in found.skipped:
                report.skipped.append(skipped)
            if found.conversation is not None:
                _add_pairs(found.conversation, str(found.conversation.id or ""), str(path), report)
        else:
            report.add(row, f"{path}:{number}")


def _qa_csv(path: Path, report: IngestReport) -> None:
    for number, row in read_csv(path, required=("question", "answer"), errors="yield"):
        if isinstance(row, RecordError):
            report.skip(row.location, row.problem)
        else:
            report.add(row, f"{path}:{number}")


def speaker_role(label: str) -> Optional[str]:
    """"customer" or "agent" for a transcript's speaker label ("Client", "Agent 7", ...); None for any other."""
    label = label.strip().lower()
    if label in CUSTOMER_LABELS:
        return "customer"
    if label in AGENT_LABELS or label.startswith("agent"):
        return "agent"
    return None


@dataclasses.dataclass
class TranscriptTurn:
    """One turn of a transcript as written: its speaker's role, text, time and where it is."""

    speaker: str  # "customer" or "agent"
    text: str
    time: Optional[str]  # as written ("10:02", "2024-03-01T10:02:00Z", ...); see `transcript_time`
    line: int
    location: str  # "file:line" (a .txt line) or "file:line turn N" (a turn of a JSONL conversation)


@dataclasses.dataclass
class TranscriptConversation:
    """One conversation of a transcript file, before anything is redacted or paired."""

    id: str  # as the transcript names it ("" when it names none)
    line: int  # where it starts
    turns: List[TranscriptTurn]
    date: Optional[str] = None  # the conversation's date or time, when the transcript gives one
    fields: Dict[str, object] = dataclasses.field(default_factory=dict)  # its other keys or "# key: value" headers


@dataclasses.dataclass
class TranscriptRead:
    """A JSONL conversation line read: the conversation (None when unusable) and what was skipped in it."""

    conversation: Optional[TranscriptConversation]
    skipped: List[Skipped]


def transcript_from_json(row: dict, path: Path, number: int) -> TranscriptRead:
    """The conversation of one JSONL line ``{"id", "turns": [{"speaker", "text", "time"}, ...], ...}``.

    A turn's speaker may be named ``speaker`` or ``role`` and its time ``time``
    or ``ts``. Turns without a known speaker (kind "speaker") or without text
    are skipped, each reported at ``file:line turn N``.
    """
    location = f"{path}:{number}"
    if not isinstance(row.get("turns"), list):
        return TranscriptRead(None, [Skipped(location, "'turns' must be a list of {speaker, text}")])
    turns: List[TranscriptTurn] = []
    skipped: List[Skipped] = []
    for position, turn in enumerate(row["turns"], start=1):
        here = f"{location} turn {position}"
        label = str(turn.get("speaker") or turn.get("role") or "") if isinstance(turn, dict) else ""
        text = turn.get("text") if isinstance(turn, dict) else None
        if not isinstance(text, str) or not text.strip():
            skipped.append(Skipped(here, "turn needs a speaker (customer or agent) and text"))
            continue
        speaker = speaker_role(label)
        if speaker is None:
            skipped.append(Skipped(here, f"unknown speaker {label!r} (expected customer or agent)", "speaker"))
            continue
        turns.append(TranscriptTurn(speaker, text.strip(), turn.get("time") or turn.get("ts"), number, here))
    fields = {k: v for k, v in row.items() if k != "turns"}
    conversation_id = row.get("id")
    return TranscriptRead(
        TranscriptConversation(id="" if conversation_id is None else str(conversation_id), line=number, turns=turns,
                               date=row.get("updated_at") or row.get("date"), fields=fields),
        skipped,
    )


def _pairs_from_turns(turns: Sequence[TranscriptTurn]) -> Iterator[Tuple[str, str, Optional[str], str, str]]:
    """(question, answer, time, question location, answer location) for each customer turn answered by an agent.

    Consecutive turns of one speaker are joined.
    """
    merged: List[List] = []
    for turn in turns:
        if merged and merged[-1][0] == turn.speaker:
            merged[-1][1] += " " + turn.text
            merged[-1][2] = turn.time or merged[-1][2]
        else:
            merged.append([turn.speaker, turn.text, turn.time, turn.location])
    for current, following in zip(merged, merged[1:]):
        if current[0] == "customer" and following[0] == "agent":
            yield current[1], following[1], following[2] or current[2], current[3], following[3]


def _add_pairs(conversation: TranscriptConversation, conversation_id: str, source: str, report: IngestReport) -> None:
    turns = conversation.turns
    answered = set()
    for question, answer, ts, q_location, _ in _pairs_from_turns(turns):
        answered.add(q_location)
        report.add(
            {"question": question, "answer": answer, "updated_at": transcript_time(ts, conversation.date),
             "source": f"{source}#{conversation_id}" if conversation_id else source, "tags": ["transcript"]},
            q_location,
        )
    last = turns[-1] if turns else None
    if last and last.speaker == "customer" and last.location not in answered:
        report.skip(last.location, "customer turn without an agent reply")


def transcript_time(ts: Optional[str], default: Optional[str]) -> Optional[str]:
    """A turn's time as written, or its conversation's date (`default`) when it has none.

    A bare time ("10:02") borrows the conversation's date ("2024-03-01T10:02").
    """
    for value in (ts, default):
        if value:
            text = str(value).strip()
            # "2024-03-01 10:02" is ISO enough for fromisoformat; a bare time borrows the conversation's date.
            if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text) and default:
                return f"{str(default).strip()[:10]}T{text}"
            return text
    return None


def read_transcript_txt(path: Path) -> Iterator[Union[TranscriptConversation, Skipped]]:
    """The conversations of a plain-text transcript, and the lines that belong to none, in file order.

    Format (see the module's docstring): ``[time] Speaker: text`` a turn;
    ``# key: value`` headers describe the conversation that follows (``date``,
    ``conversation`` or ``id``; all are kept in its ``fields``); other ``#`` lines are comments; a blank line
    or ``---`` ends a conversation; a line without a known speaker continues
    the turn before it (a message over several lines). Before a conversation's
    first turn such a line is reported: kind "speaker" when it starts with a
    label ("Bot: ...") that is not a customer's or an agent's.
    """
    conversation: List[TranscriptTurn] = []
    headers: Dict[str, str] = {}
    found: List[Union[TranscriptConversation, Skipped]] = []

    def flush() -> None:
        nonlocal conversation, headers
        if conversation:
            found.append(TranscriptConversation(id=headers.get("conversation") or headers.get("id") or "",
                                                line=conversation[0].line, turns=conversation,
                                                date=headers.get("date"), fields=dict(headers)))
        conversation, headers = [], {}

    for number, line in enumerate((line.rstrip("\r\n") for line in read_lines(path)), start=1):
        location = f"{path}:{number}"
        if not line.strip() or line.strip() == "---":
            flush()
        elif line.lstrip().startswith("#"):
            header = _HEADER.match(line)
            if header:  # "# date: 2024-03-01" describes the conversation that follows
                if conversation:
                    flush()
                headers[header["key"].strip().lower()] = header["value"]
            # any other "#" line is a comment
        else:
            turn = _TURN.match(line)
            speaker = speaker_role(turn["speaker"]) if turn else None
            if speaker:
                conversation.append(TranscriptTurn(speaker, turn["text"].strip(), turn["ts"], number, location))
            elif conversation:
                # A line without a speaker continues the previous turn (a message over several lines).
                conversation[-1].text = f"{conversation[-1].text} {line.strip()}"
            elif turn:
                found.append(Skipped(location, f"unknown speaker {turn['speaker']!r} (expected 'Customer: ...' or "
                                               f"'Agent: ...')", "speaker"))
            else:
                found.append(Skipped(location, "line outside a turn (expected 'Customer: ...' or 'Agent: ...')"))
        yield from found
        found.clear()
    flush()
    yield from found


def _transcript_txt(path: Path, report: IngestReport) -> None:
    count = 0
    for item in read_transcript_txt(path):
        if isinstance(item, Skipped):
            report.skipped.append(item)
        else:
            count += 1
            _add_pairs(item, item.id or str(count), str(path), report)


def read_history(paths: Iterable[Path], progress: bool = False) -> IngestReport:
    """Read question/answer files and transcripts (files or folders) into one report.

    Folders are read recursively (``*.jsonl``, ``*.csv``, ``*.txt``), in name
    order. Files that cannot be read are reported, not raised.
    """
    files: List[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in QA_SUFFIXES | TRANSCRIPT_SUFFIXES)
        else:
            files.append(path)
    report = IngestReport()
    if progress:
        from tqdm import tqdm

        files = tqdm(files, desc="reading history", unit="file")
    for path in files:
        if not path.exists():
            report.skip(str(path), "file does not exist")
            continue
        suffix = path.suffix.lower()
        try:
            if suffix == ".jsonl":
                _qa_jsonl(path, report)
            elif suffix == ".csv":
                _qa_csv(path, report)
            elif suffix == ".txt":
                _transcript_txt(path, report)
            else:
                report.skip(str(path), f"unknown file type '{suffix}' (expected .jsonl, .csv or .txt)")
        except OSError as exc:
            report.skip(str(path), f"cannot read ({exc.strerror})")
    return report


@dataclasses.dataclass(frozen=True)
class Merge:
    """A record dropped because a newer record asks (nearly) the same question."""

    dropped: AnswerRecord
    kept: AnswerRecord
    similarity: float


def merge_near_duplicates(
    records: Sequence[AnswerRecord], vectors: np.ndarray, threshold: float = 0.95, neighbours: int = 10
) -> Tuple[List[int], List[Merge]]:
    """Keep one record per group of near-duplicate questions: the newest.

    Two questions are near duplicates when the cosine similarity of their
    (normalised) vectors is at least `threshold`, or when they share an id.
    Records are visited newest first (by ``updated_at``, then by position: a
    later line is newer); a record is dropped when a kept one is its near
    duplicate. Returns the positions kept (in input order) and the merges.
    """
    import faiss

    n = len(records)
    if n == 0:
        return [], []
    order = sorted(range(n), key=lambda i: (timestamp_key(records[i].updated_at), i), reverse=True)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors, dtype="float32"))
    scores, neighbour_ids = flat.search(np.ascontiguousarray(vectors, dtype="float32"), min(neighbours + 1, n))
    kept: Dict[int, None] = {}
    kept_ids: Dict[str, int] = {}
    merges: List[Merge] = []
    for i in order:
        twin = kept_ids.get(records[i].id)
        similarity = 1.0
        if twin is None:
            for score, j in zip(scores[i], neighbour_ids[i]):
                if j != i and j in kept and score >= threshold:
                    twin, similarity = int(j), float(score)
                    break
        if twin is None:
            kept[i] = None
            kept_ids[records[i].id] = i
        else:
            merges.append(Merge(dropped=records[i], kept=records[twin], similarity=similarity))
    return sorted(kept), merges
