"""The audit log: who signed in (or failed to), and who opened or acted on which customer's conversation.

This module is the one writer of ``audit_log`` rows, and it only appends:
there is no call here that changes or removes a row, and the database
refuses UPDATE and DELETE on the table with a trigger (migration v3), so a
row once written stays as written.

Actions recorded (``action`` column):

- ``signin``, ``signin.failed`` (wrong password, unknown or disabled account,
  refused OIDC answer), ``signin.locked`` (refused during a lockout), ``signout``;
- ``conversation.open`` (a transcript and profile shown), ``conversation.take``,
  ``conversation.reply``, ``conversation.handback``;
- ``account.add``, ``account.disable``, ``account.reset``, ``account.password``;
- ``audit.export``;
- ``customer.open`` (a supervisor opened a customer page, `bot.insight.pages`; detail ``found``).

Supervisors read it in the inbox (`recent`) and export it (`export`).
"""
from __future__ import annotations

import csv
import io
import json
import time
from typing import Any, Dict, Iterator, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core import db

FIELDS = ("id", "ts", "actor", "action", "target", "client", "detail")
EXPORT_FORMATS = ("csv", "jsonl")


def record(
    engine: Engine,
    actor: str,
    action: str,
    target: Optional[str] = None,
    client: Optional[str] = None,
    detail: Optional[Dict[str, Any]] = None,
) -> None:
    """Append one row: `actor` (a username, or what was typed for a failed sign-in) did `action` to `target`."""
    with engine.begin() as conn:
        conn.execute(
            db.audit_log.insert().values(
                ts=time.time(),
                actor=(actor or "?")[:128],
                action=action[:64],
                target=None if target is None else str(target)[:256],
                client=None if client is None else str(client)[:64],
                detail=detail or {},
            )
        )


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
