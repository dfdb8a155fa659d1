"""The audit log as the inbox reads it: the newest rows (`recent`) and the whole log (`export`).

Rows are written by `record`, re-exported here from `core.audit`, the one
writer of ``audit_log`` (append only; its docstring lists every action).
Supervisors read the log in the inbox (`recent`) and export it (`export`).
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, Iterator, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core import db
from core.audit import record

__all__ = ["record", "recent", "export", "FIELDS", "EXPORT_FORMATS"]

FIELDS = ("id", "ts", "actor", "action", "target", "client", "detail")
EXPORT_FORMATS = ("csv", "jsonl")


def _query(actor: Optional[str], action: Optional[str], target: Optional[str]) -> sa.sql.Select:
    query = sa.select(*(db.audit_log.c[name] for name in FIELDS))
    if actor:
        query = query.where(db.audit_log.c.actor == actor)
    if action:
        query = query.where(db.audit_log.c.action == action)
    if target:
        query = query.where(db.audit_log.c.target == target)
    return query


def recent(
    engine: Engine,
    limit: int = 100,
    before_id: Optional[int] = None,
    actor: Optional[str] = None,
    action: Optional[str] = None,
    target: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """The newest rows first (at most `limit`, older than `before_id` when given), optionally filtered."""
    query = _query(actor, action, target).order_by(db.audit_log.c.id.desc()).limit(max(1, min(int(limit), 1000)))
    if before_id is not None:
        query = query.where(db.audit_log.c.id < int(before_id))
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def export(engine: Engine, fmt: str, batch: int = 1000) -> Iterator[str]:
    """The whole log, oldest first, as CSV (with a header line) or JSON lines, in chunks of text."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "csv":
        yield ",".join(FIELDS) + "\r\n"
    last = 0
    while True:
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(
                _query(None, None, None).where(db.audit_log.c.id > last).order_by(db.audit_log.c.id).limit(batch)
            ).mappings()]
        if not rows:
            return
        last = rows[-1]["id"]
        out = io.StringIO()
        if fmt == "csv":
            writer = csv.writer(out)
            for row in rows:
                writer.writerow([_csv_cell(row[name]) for name in FIELDS])
        else:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        yield out.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    # A cell starting with = + - @ is a formula to a spreadsheet: keep it text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
