"""A machine-readable copy of everything held about a customer (GDPR Article 15).

    python -m bot.privacy.export CUSTOMER_ID [--out FILE]     # for staff: prints the file written

`build_export` gathers, for the customer and every conversation linked to
them: the profile, interactions, answer ratings, handoffs, review items,
the experiments they were in (arm and every exposure), identity links, erasure requests and the transcripts of the conversations
(the tracker store's events, across channels). `create_export` keeps it in table
``data_exports`` (encrypted at rest like the other personal columns, so any
Rasa replica can serve it) with a copy in ``var/exports/``, and returns a
random download token (32 bytes, URL-safe), valid ``EXPORT_HOURS``; only its
SHA-256 is stored, so the token is known only to the conversation it was given in.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.privacy import erase
from bot.privacy.identity import conversations_of
from core import crypto, db
from core.settings import PROJECT_ROOT

EXPORT_DIR = PROJECT_ROOT / "var" / "exports"
EXPORT_HOURS = 24
FORMAT = "northwind-data-export/1"
DOWNLOAD_PATH = "/webhooks/privacy/export/"


def token_hash(token: str) -> str:
    """The stored form of a download token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _rows(conn, table: sa.Table, *clauses) -> List[Dict[str, Any]]:
    return [_plain(dict(r)) for r in conn.execute(sa.select(table).where(sa.or_(*clauses))).mappings()]


def transcript(conversation_id: str, engine: Optional[Engine] = None) -> List[Dict[str, Any]]:
    """The stored events of a conversation as {event, timestamp, text?, intent?, action?}, oldest first."""
    engine = engine or erase.tracker_engine()
    if engine is None or not erase._has_events_table(engine):
        return []
    with engine.connect() as conn:
        rows = conn.execute(sa.select(erase.EVENTS.c.data).where(erase.EVENTS.c.sender_id == conversation_id)
                            .order_by(erase.EVENTS.c.id)).scalars().all()
    events = []
    for raw in rows:
        try:
            data = json.loads(crypto.decrypt_text(raw))
        except (TypeError, ValueError, crypto.EncryptionKeyError):
            continue
        entry = {"event": data.get("event"), "timestamp": data.get("timestamp")}
        if data.get("text") is not None:
            entry["text"] = data["text"]
        intent = ((data.get("parse_data") or {}).get("intent") or {}).get("name")
        if intent:
            entry["intent"] = intent
        if data.get("event") == "action" and data.get("name"):
            entry["action"] = data["name"]
        if data.get("event") == "slot":
            entry.update(slot=data.get("name"), value=_plain(data.get("value")))
        events.append(entry)
    return events


def build_export(engine: Engine, customer_id: str, conversations: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Everything held about `customer_id` (and the conversations linked to them), as plain JSON data."""
    ids = list(dict.fromkeys([customer_id, *(conversations if conversations is not None else conversations_of(customer_id))]))
    with engine.connect() as conn:
        data: Dict[str, Any] = {
            "format": FORMAT,
            "customer_id": customer_id,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "conversations": ids,
            "profile": _rows(conn, db.customers, db.customers.c.id.in_(ids)),
            "interactions": _rows(conn, db.interactions, db.interactions.c.customer_id.in_(ids), db.interactions.c.conversation_id.in_(ids)),
            "answer_ratings": _rows(conn, db.answer_ratings, db.answer_ratings.c.customer_id.in_(ids), db.answer_ratings.c.conversation_id.in_(ids)),
            "handoffs": _rows(conn, db.handoffs, db.handoffs.c.customer_id.in_(ids), db.handoffs.c.conversation_id.in_(ids)),
            "satisfaction": _rows(conn, db.satisfaction, db.satisfaction.c.customer_id.in_(ids), db.satisfaction.c.conversation_id.in_(ids)),
            "review_items": _rows(conn, db.review_queue, db.review_queue.c.conversation_id.in_(ids)),
            "experiment_assignments": _rows(conn, db.experiment_assignments, db.experiment_assignments.c.customer_id.in_(ids)),
            "experiment_exposures": _rows(conn, db.experiment_exposures, db.experiment_exposures.c.customer_id.in_(ids),
                                          db.experiment_exposures.c.conversation_id.in_(ids)),
            "erasure_requests": [{k: v for k, v in r.items() if k not in ("open_key", "claimed_by", "lease_until")}
                                 for r in _rows(conn, db.erasure_requests, db.erasure_requests.c.customer_id == customer_id)],
        }
        identities = getattr(db, "identities", None)
        if identities is not None:
            clauses = [getattr(identities.c, n).in_(ids) for n in ("customer_id", "conversation_id") if n in identities.c]
            data["identities"] = _rows(conn, identities, *clauses) if clauses else []
    data["transcripts"] = {c: transcript(c) for c in ids}
    return data


def create_export(engine: Engine, customer_id: str, conversation_id: Optional[str] = None,
                  conversations: Optional[Sequence[str]] = None, hours: float = EXPORT_HOURS,
                  folder: Optional[Path] = None) -> Tuple[str, Path]:
    """Write the export to var/exports/ and record its token; returns (token, file)."""
    data = build_export(engine, customer_id, conversations)
    folder = Path(folder or EXPORT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path = folder / f"{secrets.token_hex(16)}.json"
    content = json.dumps(data, ensure_ascii=False, indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # readable by this service only
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(db.data_exports.insert().values(
            token_hash=token_hash(token), customer_id=customer_id, conversation_id=conversation_id, content=content,
            path=str(path), created_at=now, expires_at=now + hours * 3600.0,
        ))
    return token, path


def find_export(engine: Engine, token: str, now: Optional[float] = None) -> Optional[str]:
    """The JSON text of an unexpired export with this token, or None (unknown, expired or erased)."""
    now = time.time() if now is None else now
    with engine.connect() as conn:
        return conn.execute(sa.select(db.data_exports.c.content).where(
            db.data_exports.c.token_hash == token_hash(token), db.data_exports.c.expires_at > now)).scalar()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write everything held about a customer as JSON (GDPR Article 15).")
    parser.add_argument("customer_id")
    parser.add_argument("--out", type=Path, help="file to write (default: print to standard output)")
    parser.add_argument("--db", help="database URL (default: the configured one)")
    args = parser.parse_args(argv)
    try:
        engine = db.connect(args.db)
    except db.DatabaseUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(build_export(engine, args.customer_id), ensure_ascii=False, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        os.chmod(args.out, 0o600)
        print(f"wrote the data held about {args.customer_id} to {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
