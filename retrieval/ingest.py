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
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from core.language import CJK_RUN, words
from core.records import RecordError, read_csv, read_jsonl, read_lines
from core.redaction import find_personal_data, redact
from retrieval.index import AnswerRecord, as_record, timestamp_key

QA_SUFFIXES = {".jsonl", ".csv"}
TRANSCRIPT_SUFFIXES = {".txt", ".jsonl"}
CUSTOMER_LABELS = {"customer", "client", "user", "caller", "member", "cust"}
AGENT_LABELS = {"agent", "advisor", "adviser", "staff", "support", "bank", "operator", "rep", "assistant", "colleague"}
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

    def skip(self, location: str, reason: str) -> None:
        """Record that the line at `location` was skipped for `reason`."""
        self.skipped.append(Skipped(location, reason))

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
            _conversation_from_json(row, f"{path}:{number}", report)
        else:
            report.add(row, f"{path}:{number}")


def _qa_csv(path: Path, report: IngestReport) -> None:
    for number, row in read_csv(path, required=("question", "answer"), errors="yield"):
        if isinstance(row, RecordError):
            report.skip(row.location, row.problem)
        else:
            report.add(row, f"{path}:{number}")


def _speaker(label: str) -> Optional[str]:
    label = label.strip().lower()
    if label in CUSTOMER_LABELS:
        return "customer"
    if label in AGENT_LABELS or label.startswith("agent"):
        return "agent"
    return None


def _pairs_from_turns(turns: Sequence[Tuple[str, str, Optional[str], str]]) -> Iterator[Tuple[str, str, Optional[str], str, str]]:
    """(question, answer, time, question location, answer location) for each customer turn answered by an agent.

    `turns` are (speaker, text, time, location); consecutive turns of one speaker are joined.
    """
    merged: List[List] = []
    for speaker, text, ts, location in turns:
        if merged and merged[-1][0] == speaker:
            merged[-1][1] += " " + text
            merged[-1][2] = ts or merged[-1][2]
        else:
            merged.append([speaker, text, ts, location])
    for current, following in zip(merged, merged[1:]):
        if current[0] == "customer" and following[0] == "agent":
            yield current[1], following[1], following[2] or current[2], current[3], following[3]


def _conversation_from_json(row: dict, location: str, report: IngestReport) -> None:
    turns = []
    if not isinstance(row.get("turns"), list):
        report.skip(location, "'turns' must be a list of {speaker, text}")
        return
    for position, turn in enumerate(row["turns"], start=1):
        speaker = _speaker(str(turn.get("speaker") or turn.get("role") or "")) if isinstance(turn, dict) else None
        text = turn.get("text") if isinstance(turn, dict) else None
        if speaker is None or not isinstance(text, str) or not text.strip():
            report.skip(f"{location} turn {position}", "turn needs a speaker (customer or agent) and text")
            continue
        turns.append((speaker, text.strip(), turn.get("ts") or turn.get("time"), f"{location} turn {position}"))
    _add_pairs(turns, row.get("updated_at") or row.get("date"), str(row.get("id") or ""), location.rsplit(":", 1)[0], report)


def _add_pairs(turns, default_time, conversation: str, source: str, report: IngestReport) -> None:
    answered = set()
    for question, answer, ts, q_location, _ in _pairs_from_turns(turns):
        answered.add(q_location)
        report.add(
            {"question": question, "answer": answer, "updated_at": _transcript_time(ts, default_time),
             "source": f"{source}#{conversation}" if conversation else source, "tags": ["transcript"]},
            q_location,
        )
    last = turns[-1] if turns else None
    if last and last[0] == "customer" and last[3] not in answered:
        report.skip(last[3], "customer turn without an agent reply")


def _transcript_time(ts: Optional[str], default: Optional[str]) -> Optional[str]:
    for value in (ts, default):
        if value:
            text = str(value).strip()
            # "2024-03-01 10:02" is ISO enough for fromisoformat; a bare time borrows the conversation's date.
            if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text) and default:
                return f"{str(default).strip()[:10]}T{text}"
            return text
    return None


def _transcript_txt(path: Path, report: IngestReport) -> None:
    lines = [line.rstrip("\r\n") for line in read_lines(path)]
    conversation: List[Tuple[str, str, Optional[str], str]] = []
    headers: Dict[str, str] = {}
    count = 0

    def flush() -> None:
        nonlocal conversation, headers, count
        if conversation:
            count += 1
            conversation_id = headers.get("conversation") or headers.get("id") or str(count)
            _add_pairs(conversation, headers.get("date"), conversation_id, str(path), report)
        conversation, headers = [], {}

    for number, line in enumerate(lines, start=1):
        location = f"{path}:{number}"
        if not line.strip() or line.strip() == "---":
            flush()
            continue
        if line.lstrip().startswith("#"):
            header = _HEADER.match(line)
            if header:  # "# date: 2024-03-01" describes the conversation that follows
                if conversation:
                    flush()
                headers[header["key"].strip().lower()] = header["value"]
            continue  # any other "#" line is a comment
        turn = _TURN.match(line)
        speaker = _speaker(turn["speaker"]) if turn else None
        if speaker:
            conversation.append((speaker, turn["text"].strip(), turn["ts"], location))
        elif conversation:
            # A line without a speaker continues the previous turn (a message over several lines).
            speaker, text, ts, first = conversation[-1]
            conversation[-1] = (speaker, f"{text} {line.strip()}", ts, first)
        else:
            report.skip(location, "line outside a turn (expected 'Customer: ...' or 'Agent: ...')")
    flush()


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
