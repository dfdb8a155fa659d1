"""The queue of conversations waiting for, or talking to, a human agent: the one writer of handoff rows.

One row of ``core.db.handoffs`` per handoff: ``waiting`` until an agent
takes it, ``active`` while the agent talks, ``closed`` once the agent hands
the conversation back to the assistant (or the customer stops waiting). A
conversation has at most one open (waiting or active) handoff: the database
holds it to that (the partial unique index ``uq_handoffs_open_conversation``,
migration 0009), so two processes opening one together get one row, not two.
The queue position of a waiting conversation is 1 + the number of
conversations that started waiting before it.

Nothing else in the project inserts or updates handoff rows: the action
server's ``action_handoff`` and the Rasa server's desk both come here.
"""
from __future__ import annotations

import dataclasses
import time
from typing import List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core import db

WAITING, ACTIVE, CLOSED = "waiting", "active", "closed"
OPEN = (WAITING, ACTIVE)
REASONS = ("asked", "complaint", "fallbacks", "frustration")  # "complaint": set by the dialogue's action_handoff


def open_handoff_exists(error: BaseException) -> bool:
    """Whether an IntegrityError is the unique index refusing a second open handoff of a conversation."""
    text = str(getattr(error, "orig", error)).lower()
    return "uq_handoffs_open_conversation" in text or ("unique" in text and "handoffs.conversation_id" in text)


@dataclasses.dataclass(frozen=True)
class Handoff:
    """One conversation handed to a human."""

    id: int
    conversation_id: str
    customer_id: Optional[str]
    channel: Optional[str]
    reason: str
    status: str
    agent: Optional[str]
    summary: Optional[str]
    created_at: float
    updated_at: float
    taken_at: Optional[float] = None  # when an agent first took it

    @property
    def is_open(self) -> bool:
        """Waiting for or talking to an agent."""
        return self.status in OPEN

    def as_dict(self) -> dict:
        """The handoff as JSON-ready values."""
        return dataclasses.asdict(self)


class HandoffQueue:
    """Open, take and close handoffs in the project's database."""

    def __init__(self, engine: Optional[Engine] = None) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        """The database engine, opened on first use (the server may start before the database)."""
        if self._engine is None:
            self._engine = db.connect()
        return self._engine

    @staticmethod
    def _row(row) -> Handoff:
        return Handoff(**{field.name: row._mapping[field.name] for field in dataclasses.fields(Handoff)})

    # Built once: SQLAlchemy then skips rebuilding and re-keying the statement on every
    # message (300 -> 55 microseconds a call; the desk asks twice per message).
    _CURRENT = (
        sa.select(db.handoffs)
        .where(db.handoffs.c.conversation_id == sa.bindparam("conversation_id"), db.handoffs.c.status.in_(OPEN))
        .order_by(db.handoffs.c.id.desc())
        .limit(1)
    )

    def current(self, conversation_id: str) -> Optional[Handoff]:
        """The open handoff of a conversation, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(self._CURRENT, {"conversation_id": conversation_id}).first()
        return self._row(row) if row else None

    def latest(self, conversation_id: str) -> Optional[Handoff]:
        """The most recent handoff of a conversation, open or closed."""
        t = db.handoffs
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t).where(t.c.conversation_id == conversation_id).order_by(t.c.id.desc()).limit(1)
            ).first()
        return self._row(row) if row else None

    def open(
        self,
        conversation_id: str,
        reason: str,
        customer_id: Optional[str] = None,
        channel: Optional[str] = None,
        summary: Optional[str] = None,
    ) -> Handoff:
        """Put a conversation in the queue; a conversation already there keeps its place (and its reason)."""
        if reason not in REASONS:
            raise ValueError(f"handoff reason must be one of {', '.join(REASONS)}, not {reason!r}")
        existing = self.current(conversation_id)
        if existing is not None:
            return existing
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    db.handoffs.insert().values(
                        conversation_id=conversation_id,
                        customer_id=customer_id,
                        channel=channel,
                        reason=reason,
                        status=WAITING,
                        summary=summary,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except sa.exc.IntegrityError as exc:  # another process opened it between our read and our insert
            if not open_handoff_exists(exc):
                raise
        return self.current(conversation_id)  # type: ignore[return-value]

    def position(self, conversation_id: str) -> Optional[int]:
        """1 for the next conversation an agent will take; None when not waiting."""
        handoff = self.current(conversation_id)
        if handoff is None or handoff.status != WAITING:
            return None
        t = db.handoffs
        with self.engine.connect() as conn:
            ahead = conn.execute(
                sa.select(sa.func.count())
                .select_from(t)
                .where(
                    t.c.status == WAITING,
                    sa.or_(
                        t.c.created_at < handoff.created_at,
                        sa.and_(t.c.created_at == handoff.created_at, t.c.id < handoff.id),
                    ),
                )
            ).scalar()
        return int(ahead) + 1

    def open_handoffs(self) -> List[Handoff]:
        """Every waiting and active handoff, waiting ones first, oldest first."""
        t = db.handoffs
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.status.in_(OPEN)).order_by(t.c.created_at, t.c.id)).all()
        handoffs = [self._row(r) for r in rows]
        return sorted(handoffs, key=lambda h: (h.status != WAITING, h.created_at, h.id))

    def _set(self, conversation_id: str, **values) -> Optional[Handoff]:
        handoff = self.current(conversation_id)
        if handoff is None:
            return None
        t = db.handoffs
        with self.engine.begin() as conn:  # only while still open: a hand-back meanwhile wins
            conn.execute(t.update().where(t.c.id == handoff.id, t.c.status.in_(OPEN)).values(updated_at=time.time(), **values))
        return self.latest(conversation_id)

    def take(self, conversation_id: str, agent: str) -> Optional[Handoff]:
        """An agent takes the conversation; None when it is not in the queue."""
        handoff = self.current(conversation_id)
        if handoff is None:
            return None
        first = {} if handoff.taken_at is not None else {"taken_at": time.time()}
        return self._set(conversation_id, status=ACTIVE, agent=agent, **first)

    def cancel(self, conversation_id: str) -> Optional[Handoff]:
        """The customer stops waiting (no agent had taken it); None when nothing was waiting."""
        handoff = self.current(conversation_id)
        if handoff is None or handoff.status != WAITING:
            return None
        return self._set(conversation_id, status=CLOSED)

    def expected_wait_s(self, days: float = 14, at_least: int = 3, now: Optional[float] = None) -> Optional[float]:
        """The median wait (seconds from queued to taken) of the handoffs taken in the last `days`, or None
        with fewer than `at_least` of them (too little history to promise anything)."""
        t = db.handoffs
        since = (now or time.time()) - days * 86400
        with self.engine.connect() as conn:
            waits = sorted(conn.execute(
                sa.select(t.c.taken_at - t.c.created_at).where(t.c.taken_at.isnot(None), t.c.taken_at >= since)
            ).scalars())
        if len(waits) < max(1, at_least):
            return None
        middle = len(waits) // 2
        return float(waits[middle] if len(waits) % 2 else (waits[middle - 1] + waits[middle]) / 2)

    def close(self, conversation_id: str, agent: Optional[str] = None) -> Optional[Handoff]:
        """The conversation goes back to the assistant; None when it was not handed off."""
        values = {"status": CLOSED}
        if agent:
            values["agent"] = agent
        return self._set(conversation_id, **values)
