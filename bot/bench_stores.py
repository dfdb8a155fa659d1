"""What encryption at rest costs the tracker store: time per turn, without and with a key.

    python -m bot.bench_stores [--turns 20] [--postgres]

Each turn saves a customer message, the bot's action and reply (4 events) with
this project's store (`bot.stores.CachingSQLTrackerStore`) on a temporary
SQLite file (with ``--postgres``: a database of a PostgreSQL started for the
run by `bot.local_services`), then the conversation is read back by a second
store, as another replica would, and by the first (docs/security.md has the
figures).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from typing import Any, Dict, List, Optional

import sqlalchemy as sa

from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.stores import CachingSQLTrackerStore
from core import crypto


def bench(turns: int = 20, repeats: int = 3, postgres: Any = None) -> Dict[str, Dict[str, float]]:
    """Tracker store time per turn (ms), without and with a key, on a temporary SQLite file,
    or on a new database of `postgres` (a `bot.local_services.PostgresServer`) for each run.

    Each turn saves a customer message, the bot's action and reply (4 events),
    then the conversation is retrieved by a second store, as another replica
    would (a cache miss: every event of the session read and decrypted), and
    by the first (a cache hit: one count query). Best of `repeats` runs.
    Returns {"off"|"on": {"save", "retrieve_miss", "retrieve_hit", "total"}}.
    """
    domain = Domain.from_yaml('version: "3.1"\nintents: [greet]\nresponses:\n  utter_greet: [{text: hi}]\n')

    def open_store(path: str) -> CachingSQLTrackerStore:
        if postgres is None:
            return CachingSQLTrackerStore(domain, dialect="sqlite", db=path)
        url = sa.engine.make_url(path)
        return CachingSQLTrackerStore(domain, dialect="postgresql", host=url.host, port=url.port, db=url.database,
                                      username=url.username, password=url.password)

    async def one_run(path: str) -> Dict[str, float]:
        store, other = open_store(path), open_store(path)
        tracker = DialogueStateTracker("bench", domain.slots)
        spent = {"save": 0.0, "retrieve_miss": 0.0, "retrieve_hit": 0.0}
        for n in range(turns):
            tracker.update(UserUttered(f"my card ending 4242 was charged twice on order {n}, please refund",
                                       {"name": "greet", "confidence": 0.9}, metadata={"channel": "web"}))
            tracker.update(ActionExecuted("utter_greet"))
            tracker.update(BotUttered("I'm sorry to hear that. Let me look into it for you.", metadata={"x": n}))
            tracker.update(ActionExecuted("action_listen"))
            for name, call in (("save", lambda: store.save(tracker)), ("retrieve_miss", lambda: other.retrieve("bench")),
                               ("retrieve_hit", lambda: store.retrieve("bench"))):
                started = time.perf_counter()
                result = await call()
                spent[name] += time.perf_counter() - started
            tracker = result
        figures = {name: seconds * 1000 / turns for name, seconds in spent.items()}
        figures["total"] = sum(figures.values())
        return figures

    saved = os.environ.get(crypto.KEY_VARIABLE)
    results: Dict[str, Dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for label, key in (("off", None), ("on", crypto.new_key())):
                if key is None:
                    os.environ.pop(crypto.KEY_VARIABLE, None)
                else:
                    os.environ[crypto.KEY_VARIABLE] = key
                runs = [asyncio.run(one_run(os.path.join(folder, f"{label}{r}.db") if postgres is None else
                                            postgres.create_database(f"bench_{label}{r}_{uuid.uuid4().hex[:8]}")))
                        for r in range(repeats)]
                results[label] = min(runs, key=lambda f: f["total"])
    finally:
        if saved is None:
            os.environ.pop(crypto.KEY_VARIABLE, None)
        else:
            os.environ[crypto.KEY_VARIABLE] = saved
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.bench_stores", description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20, help="turns in the conversation (default 20)")
    parser.add_argument("--postgres", action="store_true",
                        help="on a PostgreSQL started for the run (bot.local_services) instead of a SQLite file")
    args = parser.parse_args(argv)
    if args.postgres:
        from bot.local_services import postgres_server

        with postgres_server() as server:
            results = bench(args.turns, postgres=server)
    else:
        results = bench(args.turns)
    where = "PostgreSQL" if args.postgres else "SQLite"
    print(f"tracker store, ms per turn ({args.turns} turns of 4 events, {where}, best of 3):")
    print(f"{'':>14} {'save':>7} {'miss':>7} {'hit':>7} {'total':>7}")
    for label, text in (("off", "no key"), ("on", "with key")):
        f = results[label]
        print(f"{text:>14} {f['save']:7.2f} {f['retrieve_miss']:7.2f} {f['retrieve_hit']:7.2f} {f['total']:7.2f}")
    off, on = results["off"]["total"], results["on"]["total"]
    print(f"encryption adds {on - off:.2f} ms a turn ({100 * (on / off - 1):+.0f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
