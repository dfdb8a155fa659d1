"""Durable erasure requests: recorded once, claimed by one worker, retried until done.

    request_id, new = record_request(engine, "web:4f1c...", via="web:4f1c...")
    claimed = claim_next(engine, worker="host:123")   # None when nothing is due
    finish(engine, claimed["id"], removed)            # or retry_later(engine, claimed["id"], error)

A customer has at most one open (pending or running) request: recording a
second one returns the open one (column ``open_key`` is unique and cleared
when the request closes). A claim is one UPDATE that only succeeds on a
request still due, so two workers never run the same request; a running claim
whose lease ran out (its worker died, the action server restarted) is due again.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Any, Dict, Iterable, Optional, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core import db

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
# How long a worker may hold a claim before another takes it over.
LEASE_SECONDS = 300.0
# Backoff between attempts: BASE * 2**attempts, at most MAX; after MAX_ATTEMPTS the request is failed (and logged).
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 3600.0
MAX_ATTEMPTS = 50

table = db.erasure_requests


def worker_name() -> str:
    """This process as a worker name: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def record_request(engine: Engine, customer_id: str, via: Optional[str] = None, now: Optional[float] = None) -> Tuple[int, bool]:
    """Record that `customer_id` asked to be erased; returns (request id, whether it is new).

    Idempotent: while a request of this customer is open, its id is returned
    and nothing is written.
    """
    if not customer_id:
        raise ValueError("an erasure request needs a customer id")
    now = time.time() if now is None else now
    for _ in range(3):
        with engine.begin() as conn:
            existing = conn.execute(sa.select(table.c.id).where(table.c.open_key == customer_id)).scalar()
            if existing is not None:
                return int(existing), False
        try:
            with engine.begin() as conn:
                result = conn.execute(table.insert().values(
                    customer_id=customer_id, open_key=customer_id, requested_at=now, requested_via=via,
                    status=PENDING, attempts=0, next_attempt_at=now, removed={},
                ))
                return int(result.inserted_primary_key[0]), True
        except sa.exc.IntegrityError:  # another replica recorded it at the same moment
            continue
    raise RuntimeError(f"could not record the erasure request of {customer_id!r}")


def get_request(engine: Engine, request_id: int) -> Optional[Dict[str, Any]]:
    """One request as a dict, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.id == request_id)).mappings().first()
    return dict(row) if row else None


def claim_next(engine: Engine, worker: Optional[str] = None, now: Optional[float] = None,
               lease: float = LEASE_SECONDS) -> Optional[Dict[str, Any]]:
    """Claim the oldest due request for `worker` (pending and due, or running with an expired lease); None if none.

    The claim is a conditional UPDATE: when two workers pick the same row,
    only one UPDATE matches, and the other tries the next row.
    """
    worker = worker or worker_name()
    now = time.time() if now is None else now
    due = sa.or_(
        sa.and_(table.c.status == PENDING, table.c.next_attempt_at <= now),
        sa.and_(table.c.status == RUNNING, table.c.lease_until < now),
    )
    with engine.connect() as conn:
        candidates = list(conn.execute(sa.select(table.c.id).where(due).order_by(table.c.next_attempt_at, table.c.id).limit(10)).scalars())
    for request_id in candidates:
        with engine.begin() as conn:
            taken = conn.execute(
                table.update().where(table.c.id == request_id).where(due).values(
                    status=RUNNING, claimed_by=worker, lease_until=now + lease, attempts=table.c.attempts + 1,
                )
            ).rowcount
        if taken == 1:
            return get_request(engine, request_id)
    return None


def extend_lease(engine: Engine, request_id: int, worker: str, lease: float = LEASE_SECONDS) -> bool:
    """Keep holding a claim while working on it; False when another worker took it over."""
    with engine.begin() as conn:
        return conn.execute(
            table.update().where(table.c.id == request_id).where(table.c.claimed_by == worker)
            .where(table.c.status == RUNNING).values(lease_until=time.time() + lease)
        ).rowcount == 1


def _merge(old: Optional[Dict[str, Any]], new: Dict[str, int]) -> Dict[str, int]:
    merged = {k: int(v) for k, v in (old or {}).items()}
    for key, value in new.items():
        merged[key] = merged.get(key, 0) + int(value)
    return merged


def add_removed(engine: Engine, request_id: int, removed: Dict[str, int], worker: Optional[str] = None) -> bool:
    """Add `removed` (counts per store) to the request's record now, while it is being worked on."""
    query = table.update().where(table.c.id == request_id).where(table.c.status == RUNNING)
    if worker:
        query = query.where(table.c.claimed_by == worker)
    with engine.begin() as conn:
        row = conn.execute(sa.select(table.c.removed).where(table.c.id == request_id)).first()
        if row is None:
            return False
        return conn.execute(query.values(removed=_merge(row[0], removed))).rowcount == 1


def finish(engine: Engine, request_id: int, removed: Dict[str, int], worker: Optional[str] = None) -> bool:
    """Close the request as done, adding `removed` (counts per store) to what earlier attempts removed."""
    row = get_request(engine, request_id)
    if row is None:
        return False
    query = table.update().where(table.c.id == request_id).where(table.c.status == RUNNING)
    if worker:
        query = query.where(table.c.claimed_by == worker)
    with engine.begin() as conn:
        return conn.execute(query.values(
            status=DONE, open_key=None, finished_at=time.time(), last_error=None, lease_until=None,
            removed=_merge(row.get("removed"), removed),
        )).rowcount == 1


def retry_later(engine: Engine, request_id: int, error: str, removed: Optional[Dict[str, int]] = None,
                worker: Optional[str] = None, now: Optional[float] = None) -> str:
    """Put the request back as pending with a backoff (or failed after MAX_ATTEMPTS); returns the new status."""
    row = get_request(engine, request_id)
    if row is None:
        return FAILED
    now = time.time() if now is None else now
    attempts = int(row["attempts"] or 0)
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    status = FAILED if attempts >= MAX_ATTEMPTS else PENDING
    values: Dict[str, Any] = {"status": status, "last_error": error[:2000], "next_attempt_at": now + delay,
                              "lease_until": None, "removed": _merge(row.get("removed"), removed or {})}
    if status == FAILED:
        values.update(open_key=None, finished_at=now)
    query = table.update().where(table.c.id == request_id).where(table.c.status == RUNNING)
    if worker:
        query = query.where(table.c.claimed_by == worker)
    with engine.begin() as conn:
        conn.execute(query.values(**values))
    return status


def open_request_of(engine: Engine, customer_id: str) -> Optional[Dict[str, Any]]:
    """The customer's open request, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.open_key == customer_id)).mappings().first()
    return dict(row) if row else None


def requests_of(engine: Engine, customer_id: str) -> list:
    """Every request of `customer_id`, oldest first."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).where(table.c.customer_id == customer_id).order_by(table.c.id)).mappings()]


def erased_since(engine: Engine, ids: list, since: float) -> bool:
    """Whether any of these customer ids has an erasure request (not failed) recorded after `since`."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(
            table.c.customer_id.in_(list(ids)), table.c.requested_at >= since, table.c.status != FAILED)).scalar() > 0


def erasing(engine: Engine, ids: Iterable[str], since: float) -> Dict[str, Optional[float]]:
    """{id: when its erasure finished, None while it runs} for the customer or conversation ids among `ids`
    with an erasure (not failed) still open or finished at `since` or later.

    For writers that store a row a moment after the turn it describes: a row
    made before an erasure finished must not be stored after it.
    """
    ids = [i for i in dict.fromkeys(ids) if i]
    if not ids:
        return {}
    query = sa.select(table.c.customer_id, table.c.requested_via, table.c.finished_at).where(
        sa.or_(table.c.customer_id.in_(ids), table.c.requested_via.in_(ids)), table.c.status != FAILED,
        sa.or_(table.c.finished_at.is_(None), table.c.finished_at >= since))
    wanted, found = set(ids), {}
    with engine.connect() as conn:
        for customer, via, finished in conn.execute(query):
            for key in {customer, via} & wanted:
                previous = found.get(key, 0.0)
                found[key] = None if finished is None or previous is None else max(previous, finished)
    return found
