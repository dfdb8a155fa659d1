"""The privacy worker: runs erasure requests until every store is clean, and purges old data.

    python -m bot.privacy.worker --once     # from cron: every due request, then the retention purge
    python -m bot.privacy.worker            # in the foreground, polling

Every action-server process also runs one in a background thread
(`start_in_background`, called when the action server imports the actions).

For each request it claims (`bot.privacy.requests.claim_next`: one worker
per request; a claim whose lease ran out is taken over, so a restart in the
middle only delays it), the worker:

1. waits until the Rasa server has saved the turn that asked (else Rasa would
   write the conversation back after it was deleted);
2. runs `bot.privacy.erase.erase_identity` for the customer and every
   conversation linked to them, again and again until a pass removes nothing
   (at most ``MAX_PASSES``; otherwise it tries again later);
3. tells the customer, in the conversation that asked: the notice
   ``utter_forget_me_finished`` is appended to that conversation in the
   tracker store, where the customer sees it in the conversation's history
   (the widget shows it when the chat is opened again);
4. records what it removed and closes the request.

Any failure (the database down, a file that cannot be written) puts the
request back with a backoff; nothing is lost and the worker keeps running.
Each process also applies finished erasures to what only it holds: the
recommender profiles in its memory and its spool of unsaved ratings.

Retention: when ``retention_days`` is above 0, tracker rows and project rows
older than that are deleted (`purge_older_than`), at most once an hour per process.
Expired data exports (``var/exports/``) are deleted too.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.privacy import erase, requests
from bot.privacy.identity import conversations_of
from core import crypto, db
from core.domain import response_text
from core.settings import get_settings

logger = logging.getLogger(__name__)

# A pass over every store is repeated until one removes nothing, at most this many times per attempt.
MAX_PASSES = 4
# How long to wait for the Rasa server to save the turn that asked, before erasing anyway.
SAVE_WAIT_SECONDS = 600.0
# How often each process runs the retention purge.
RETENTION_EVERY_SECONDS = 3600.0
NOTICE_RESPONSE = "utter_forget_me_finished"
# What `process` returns when its claim ran out and another worker holds the request.
TAKEN_OVER = "taken over"
NOTICE_FALLBACK = "Your data has now been erased from every place we keep it."


def notice_text() -> str:
    """The text of ``utter_forget_me_finished`` from the domain (bot/domain/)."""
    return response_text(NOTICE_RESPONSE) or NOTICE_FALLBACK


def tell_customer(conversation_id: str, text: Optional[str] = None, engine: Optional[Engine] = None) -> bool:
    """Append the bot message `text` to the conversation in the tracker store; False when there is no store.

    When the conversation was erased, it starts again as a new session
    holding only this message, the way Rasa itself would store one.
    """
    from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted

    engine = engine or erase.tracker_engine()
    if engine is None or not erase._has_events_table(engine):
        return False
    now = time.time()
    with engine.begin() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(erase.EVENTS).where(erase.EVENTS.c.sender_id == conversation_id)).scalar()
        events = [] if stored else [ActionExecuted("action_session_start", timestamp=now), SessionStarted(timestamp=now),
                                    ActionExecuted("action_listen", timestamp=now)]
        events.append(BotUttered(text or notice_text(), metadata={"utter_action": NOTICE_RESPONSE}, timestamp=now))
        conn.execute(erase.EVENTS.insert(), [
            {"sender_id": conversation_id, "type_name": e.type_name, "timestamp": e.timestamp, "intent_name": None,
             "action_name": getattr(e, "action_name", None), "data": crypto.encrypt_text(json.dumps(e.as_dict()))}
            for e in events
        ])
    return True


def purge_older_than(engine: Engine, days: int, now: Optional[float] = None) -> Dict[str, int]:
    """Delete tracker rows and project rows older than `days` days; returns counts per store. 0 days: nothing."""
    if days <= 0:
        return {}
    cutoff = (time.time() if now is None else now) - days * 86400.0
    removed: Dict[str, int] = {}
    tracker = erase.tracker_engine()
    if tracker is not None and erase._has_events_table(tracker):
        with tracker.begin() as conn:
            removed["tracker_events"] = conn.execute(erase.EVENTS.delete().where(erase.EVENTS.c.timestamp < cutoff)).rowcount
    with engine.begin() as conn:
        removed["interactions"] = conn.execute(db.interactions.delete().where(db.interactions.c.ts < cutoff)).rowcount
        removed["answer_ratings"] = conn.execute(db.answer_ratings.delete().where(db.answer_ratings.c.ts < cutoff)).rowcount
        removed["handoffs"] = conn.execute(db.handoffs.delete().where(db.handoffs.c.updated_at < cutoff)).rowcount
        removed["review_queue"] = conn.execute(db.review_queue.delete().where(db.review_queue.c.created_at < cutoff)).rowcount
        removed["experiment_exposures"] = conn.execute(
            db.experiment_exposures.delete().where(db.experiment_exposures.c.ts < cutoff)).rowcount
        # An arm goes with the customer's last exposure: nothing newer left means the experiment is long over for them.
        exposed = sa.select(db.experiment_exposures.c.id).where(
            db.experiment_exposures.c.customer_id == db.experiment_assignments.c.customer_id,
            db.experiment_exposures.c.experiment == db.experiment_assignments.c.experiment)
        removed["experiment_assignments"] = conn.execute(db.experiment_assignments.delete().where(
            db.experiment_assignments.c.assigned_at < cutoff, ~sa.exists(exposed))).rowcount
        # A real customer's profile goes when nothing newer is left of them; synthetic demo customers stay.
        active = sa.select(db.interactions.c.customer_id).where(db.interactions.c.customer_id == db.customers.c.id)
        removed["customers"] = conn.execute(db.customers.delete().where(
            db.customers.c.created_at < cutoff, db.customers.c.synthetic.is_(False), ~sa.exists(active))).rowcount
    return removed


def purge_expired_exports(engine: Engine, now: Optional[float] = None) -> int:
    """Delete data exports past their expiry (row and file); returns how many."""
    now = time.time() if now is None else now
    with engine.begin() as conn:
        rows = conn.execute(sa.select(db.data_exports.c.token_hash, db.data_exports.c.path).where(db.data_exports.c.expires_at < now)).all()
        if rows:
            conn.execute(db.data_exports.delete().where(db.data_exports.c.token_hash.in_([r[0] for r in rows])))
    for _, path in rows:
        if path:
            Path(path).unlink(missing_ok=True)
    return len(rows)


class Worker:
    """Runs due erasure requests, sweeps this process's own copies, purges old data (see module doc)."""

    def __init__(self, database_url: Optional[str] = None, name: Optional[str] = None, lease: Optional[float] = None):
        self.database_url = database_url
        self.name = name or requests.worker_name()
        self.lease = float(lease if lease is not None else get_settings().erasure_lease_seconds)
        self._swept: set = set()
        self._last_retention = 0.0
        self._stop = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def engine(self) -> Engine:
        return db.connect(self.database_url)

    # ------------------------------------------------------------------ one request

    def process(self, request: Dict[str, Any], now: Optional[float] = None) -> str:
        """Work on one claimed request; returns its status afterwards (done, pending or failed)."""
        engine = self.engine()
        now = time.time() if now is None else now
        customer, via = request["customer_id"], request.get("requested_via")
        logger.info("erasure request %s claimed by %s (attempt %s)", request["id"], self.name, request["attempts"])
        if via and now < request["requested_at"] + SAVE_WAIT_SECONDS and not erase.turn_saved(erase.tracker_engine(), via, request["requested_at"]):
            return requests.retry_later(engine, request["id"], "waiting for the Rasa server to save the conversation that asked",
                                        worker=self.name)
        conversations = conversations_of(customer)
        if via and via not in conversations:
            conversations.append(via)
        total: Dict[str, int] = {}
        clean = False
        for _ in range(MAX_PASSES):
            removed = erase.erase_identity(  # each step's counts are recorded as soon as it is done
                engine, customer, conversations, record=lambda counts: requests.add_removed(engine, request["id"], counts, self.name))
            logger.info("erasure request %s: pass removed %s", request["id"], json.dumps(removed, sort_keys=True))
            for key, value in removed.items():
                total[key] = total.get(key, 0) + value
            if not requests.extend_lease(engine, request["id"], self.name, self.lease):
                logger.warning("erasure request %s was taken over by another worker; leaving it to them", request["id"])
                return TAKEN_OVER
            if not any(removed.values()):
                clean = True
                break
        if not clean:
            return requests.retry_later(engine, request["id"], "stores still changing after several passes", worker=self.name)
        if via:
            tell_customer(via)
        if not requests.finish(engine, request["id"], {}, worker=self.name):
            return TAKEN_OVER
        logger.info("erasure request %s finished: %s", request["id"], json.dumps(total, sort_keys=True))
        return requests.DONE

    # ------------------------------------------------------------------ a round

    def run_once(self, now: Optional[float] = None) -> List[Dict[str, Any]]:
        """Every due request (each claimed first), then this process's sweep and the retention purge; returns what was done.

        Never raises for an unreachable database: the request stays claimed
        until its lease runs out, or goes back with a backoff, and is tried again.
        """
        results: List[Dict[str, Any]] = []
        try:
            engine = self.engine()
            while not self._stop.is_set():
                request = requests.claim_next(engine, self.name, now=now, lease=self.lease)
                if request is None:
                    break
                try:
                    status = self.process(request, now=now)
                except Exception as exc:  # noqa: BLE001 - every failure is retried later
                    logger.warning("erasure request %s not finished (%s); it will be tried again", request["id"], exc)
                    try:
                        status = requests.retry_later(engine, request["id"], f"{type(exc).__name__}: {exc}", worker=self.name)
                    except Exception:  # noqa: BLE001 - the database went away: the lease runs out and another claim follows
                        status = "unrecorded"
                results.append({"id": request["id"], "status": status})
                if status != requests.DONE:
                    break  # let the backoff work; other requests are taken in the next round
            self.sweep(engine)
            self.retention(engine, now=now)
        except Exception as exc:  # noqa: BLE001 - the database down: say so, keep the process alive
            logger.warning("privacy worker could not run this round: %s", exc)
        return results

    def sweep(self, engine: Engine) -> int:
        """Apply erasures that started or finished since the last sweep to this process's own copies.

        The first sweep covers every erasure ever finished (a spool of unsaved
        ratings outlives a restart); later ones only those of the last hour or still running.
        """
        query = (sa.select(db.erasure_requests.c.id, db.erasure_requests.c.status, db.erasure_requests.c.customer_id,
                           db.erasure_requests.c.requested_via)
                 .where(db.erasure_requests.c.status.in_([requests.RUNNING, requests.DONE])))
        if self._swept:
            query = query.where(sa.or_(db.erasure_requests.c.finished_at.is_(None),
                                       db.erasure_requests.c.finished_at >= time.time() - RETENTION_EVERY_SECONDS))
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        swept = 0
        for request_id, status, customer, via in rows:
            if (request_id, status) in self._swept:
                continue
            ids = conversations_of(customer) + ([via] if via else [])
            erase.forget_in_memory(ids)
            erase.erase_spooled_ratings(ids)
            self._swept.add((request_id, status))
            swept += 1
        self._swept.add(("swept", 0))
        return swept

    def retention(self, engine: Engine, now: Optional[float] = None) -> Dict[str, int]:
        """The retention purge and expired exports, at most once per RETENTION_EVERY_SECONDS."""
        now = time.time() if now is None else now
        if now - self._last_retention < RETENTION_EVERY_SECONDS:
            return {}
        removed = purge_older_than(engine, get_settings().retention_days, now=now)
        removed["data_exports"] = purge_expired_exports(engine, now=now)
        self._last_retention = now
        if any(removed.values()):
            logger.info("retention purge removed %s", json.dumps(removed, sort_keys=True))
        return removed

    # ------------------------------------------------------------------ in the background

    def start(self, poll: Optional[float] = None) -> threading.Thread:
        """Run rounds every `poll` seconds (default: the ``privacy_poll_seconds`` setting) in a daemon thread until `stop`."""
        poll = float(poll if poll is not None else get_settings().privacy_poll_seconds)

        def loop() -> None:
            while not self._stop.is_set():
                self.run_once()
                self._stop.wait(poll)

        self.thread = threading.Thread(target=loop, name="privacy-worker", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self) -> None:
        """Stop the background loop after the current round."""
        self._stop.set()


_background: Optional[Worker] = None


def start_in_background(app_name: str = "rasa_sdk") -> Optional[Worker]:
    """Start this process's worker when it is an action server (its Sanic app exists); None otherwise."""
    global _background
    if _background is not None:
        return _background
    try:
        from sanic import Sanic

        Sanic.get_app(app_name)
    except Exception:  # not inside `rasa run actions` (tests, scripts)
        return None
    _background = Worker()
    _background.start()
    logger.info("privacy worker started (%s)", _background.name)
    return _background


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="one round (every due request, then the retention purge), then exit")
    parser.add_argument("--db", help="database URL (default: the configured one)")
    parser.add_argument("--poll", type=float, help="seconds between rounds when not --once (default: privacy_poll_seconds)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = Worker(args.db)
    if args.once:
        results = worker.run_once()
        for result in results:
            print(f"erasure request {result['id']}: {result['status']}")
        return 0 if all(r["status"] == requests.DONE for r in results) else 1
    worker.start(args.poll).join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
