"""The review queue: messages the assistant handled badly, kept for a person to review.

The actions call `enqueue` for a low-confidence message, a fallback, a
thumbs-down answer or a conversation handed to an agent. The text is
redacted (`core.redaction.redact`) before it is stored, so reviewers never
see personal data. A reviewer then, per item:

- `assign_intent(item_id, intent)`: the message is an example of `intent`;
- `answer(item_id, text)`: the right answer to the message (optionally with an intent);
- `discard(item_id)`: nothing to learn from it.

`export(nlu_path, history_path)` writes every reviewed item into files the
next training reads: Rasa NLU examples (YAML) for assigned intents, and
question/answer pairs (JSONL, the `bot/history/` format) for answers.
Export rewrites both files from the database, so running it twice gives the
same files. They live in ``var/review/`` (`DEFAULT_NLU_EXPORT`,
`DEFAULT_HISTORY_EXPORT`), which git and the Docker builds leave out: they
hold customers' words, and an erasure rewrites them (`bot.privacy.erase`).
Each answer pair's source is ``review#<conversation id>``, so the answer-index
entries built from it can be found and removed when that customer is erased.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional

import sqlalchemy as sa

from core import db
from core.files import write_text_atomically
from core.redaction import redact
from core.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)

# agent_rewrite: a person at the inbox answered unlike every draft the assistant offered (bot/channels/assist.py).
REASONS = ("low_confidence", "fallback", "thumbs_down", "handoff", "agent_rewrite")
OPEN, DONE, DISCARDED = "open", "done", "discarded"
# Where the exports go: under var/ (ignored by git and by the Docker builds), never into bot/.
REVIEW_EXPORT_DIR = PROJECT_ROOT / "var" / "review"
DEFAULT_NLU_EXPORT = REVIEW_EXPORT_DIR / "reviewed_nlu.yml"
DEFAULT_HISTORY_EXPORT = REVIEW_EXPORT_DIR / "reviewed.jsonl"


class ReviewError(ValueError):
    """A review action names an unknown item, reason or an item already closed."""


def _engine(db_url: Optional[str]):
    return db.connect(db_url)


def enqueue(
    conversation_id: Optional[str],
    text: str,
    reason: str,
    predicted_intent: Optional[str] = None,
    confidence: Optional[float] = None,
    db_url: Optional[str] = None,
) -> Optional[int]:
    """Keep a message for review (redacted); returns the item id, None for an empty text.

    The same text of the same conversation for the same reason is kept once,
    so an action that runs twice does not double the work of reviewers.
    """
    if reason not in REASONS:
        raise ReviewError(f"unknown review reason '{reason}'; use one of {', '.join(REASONS)}")
    clean = redact((text or "").strip())
    if not clean:
        return None
    table = db.review_queue
    with _engine(db_url).begin() as conn:
        # Compared in Python: with ASSISTANT_ENCRYPTION_KEY set the stored text is a randomised
        # ciphertext, so an SQL equality on it would never find the duplicate.
        existing = next(
            (
                row.id
                for row in conn.execute(
                    sa.select(table.c.id, table.c.text)
                    .where(table.c.conversation_id == conversation_id)
                    .where(table.c.reason == reason)
                )
                if row.text == clean
            ),
            None,
        )
        if existing is not None:
            return int(existing)
        result = conn.execute(
            table.insert().values(
                conversation_id=conversation_id,
                text=clean,
                reason=reason,
                predicted_intent=predicted_intent,
                confidence=None if confidence is None else float(confidence),
                status=OPEN,
                created_at=time.time(),
            )
        )
        return int(result.inserted_primary_key[0])


def try_enqueue(conversation_id: Optional[str], text: str, reason: str, predicted_intent: Optional[str] = None,
                confidence: Optional[float] = None, db_url: Optional[str] = None) -> Optional[int]:
    """`enqueue` for the actions: a database problem is logged, never raised into the conversation."""
    try:
        return enqueue(conversation_id, text, reason, predicted_intent, confidence, db_url)
    except (sa.exc.SQLAlchemyError, db.DatabaseUnavailableError, OSError) as exc:
        logger.error("could not keep message of %s for review (%s): %s", conversation_id, reason, exc)
        return None


def list_items(status: Optional[str] = OPEN, reason: Optional[str] = None, limit: int = 50,
               db_url: Optional[str] = None) -> List[Dict[str, Any]]:
    """Review items, oldest first, filtered by status (None: all) and reason."""
    table = db.review_queue
    query = sa.select(table).order_by(table.c.id).limit(limit)
    if status:
        query = query.where(table.c.status == status)
    if reason:
        query = query.where(table.c.reason == reason)
    with _engine(db_url).connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def get_item(item_id: int, db_url: Optional[str] = None) -> Dict[str, Any]:
    """One review item as a dict; `ReviewError` when there is none with this id."""
    with _engine(db_url).connect() as conn:
        row = conn.execute(sa.select(db.review_queue).where(db.review_queue.c.id == item_id)).mappings().first()
    if row is None:
        raise ReviewError(f"no review item {item_id}; list them with `python -m training.review list`")
    return dict(row)


def _resolve(item_id: int, db_url: Optional[str], **values: Any) -> Dict[str, Any]:
    item = get_item(item_id, db_url)
    if item["status"] == DISCARDED and values.get("status") != DISCARDED:
        raise ReviewError(f"review item {item_id} was discarded; enqueue the message again to review it")
    with _engine(db_url).begin() as conn:
        conn.execute(db.review_queue.update().where(db.review_queue.c.id == item_id).values(**values))
    return get_item(item_id, db_url)


def assign_intent(item_id: int, intent: str, db_url: Optional[str] = None) -> Dict[str, Any]:
    """Mark the message as an example of `intent` (it becomes an NLU example)."""
    intent = (intent or "").strip()
    if not intent:
        raise ReviewError("an intent name is needed")
    return _resolve(item_id, db_url, assigned_intent=intent, status=DONE)


def answer(item_id: int, text: str, intent: Optional[str] = None, db_url: Optional[str] = None) -> Dict[str, Any]:
    """Give (or correct) the answer to the message (it becomes a question/answer pair)."""
    text = redact((text or "").strip())
    if not text:
        raise ReviewError("the answer is empty")
    values: Dict[str, Any] = {"answer": text, "status": DONE}
    if intent:
        values["assigned_intent"] = intent.strip()
    return _resolve(item_id, db_url, **values)


def discard(item_id: int, db_url: Optional[str] = None) -> Dict[str, Any]:
    """Nothing to learn from this message; it is left out of every export."""
    return _resolve(item_id, db_url, status=DISCARDED)


def counts(db_url: Optional[str] = None) -> Dict[str, int]:
    """Number of items per status."""
    table = db.review_queue
    with _engine(db_url).connect() as conn:
        rows = conn.execute(sa.select(table.c.status, sa.func.count()).group_by(table.c.status)).all()
    return {status: int(n) for status, n in rows}


def _nlu_yaml(examples: Dict[str, List[str]]) -> str:
    lines = [
        "# Written by `python -m training.review export` from the reviewed queue; edits here are",
        "# overwritten by the next export. Review the queue instead.",
        'version: "3.1"',
        "nlu:" if examples else "nlu: []",
    ]
    for intent in sorted(examples):
        lines.append(f"  - intent: {intent}")
        lines.append("    examples: |")
        for text in examples[intent]:
            lines.append("      - " + " ".join(text.split()))  # one line per example
    return "\n".join(lines) + "\n"


def export(nlu_path: Path, history_path: Path, known_intents: Optional[List[str]] = None,
           db_url: Optional[str] = None) -> Dict[str, int]:
    """Write reviewed items into the NLU file and the history file; returns how many of each.

    Items with an intent become NLU examples (an intent not in
    `known_intents`, when given, is refused with the list of known ones, so
    training never fails on it later); items with an answer become
    question/answer pairs with source "review".
    """
    items = list_items(status=DONE, limit=1_000_000, db_url=db_url)
    examples: Dict[str, List[str]] = defaultdict(list)
    pairs: List[Dict[str, Any]] = []
    for item in items:
        intent = item.get("assigned_intent")
        if intent:
            if known_intents is not None and intent not in known_intents:
                raise ReviewError(
                    f"review item {item['id']} has intent '{intent}', which the domain does not know; "
                    f"reassign it (known intents: {', '.join(sorted(known_intents))})"
                )
            if item["text"] not in examples[intent]:
                examples[intent].append(item["text"])
        if item.get("answer"):
            pairs.append({
                "id": f"review-{item['id']}",
                "question": item["text"],
                "answer": item["answer"],
                "tags": [intent] if intent else ["reviewed"],
                "updated_at": time.strftime("%Y-%m-%d", time.gmtime(item["created_at"])),
                # Provenance: the conversation the words came from, so an erasure finds the index entry.
                "source": f"review#{item['conversation_id']}" if item.get("conversation_id") else "review",
            })
    nlu_path, history_path = Path(nlu_path), Path(history_path)
    nlu_path.parent.mkdir(parents=True, exist_ok=True)
    history_path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside, then rename: an interrupted export never leaves half a training file.
    for path, content in ((nlu_path, _nlu_yaml(examples)),
                          (history_path, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))):
        write_text_atomically(path, content)
    return {"nlu_examples": sum(len(v) for v in examples.values()), "history_pairs": len(pairs)}
