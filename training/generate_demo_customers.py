"""Generate SYNTHETIC demo customers and their histories with Northwind Bank's catalogue.

    python -m training.generate_demo_customers            # 300 customers, seed 7
    python -m training.generate_demo_customers --customers 1000 --seed 1 --no-db

For the demo only: nobody here is a real customer. Every customer id starts
with ``demo-``, every row written carries ``"synthetic": true``, and the
customers are stored in the database with ``synthetic = true``; running the
command again replaces the synthetic customers (real ones are never touched).

Each customer belongs to a segment (student, young professional, family,
traveller, retired, small business) that shapes what they hold, what they
ask about and what they look at next, so that the recommender has patterns
to learn: someone who asks about exchange rates tends to look at the travel
products, a new saver often opens an ISA next, and so on. The same seed
always gives the same files.

Writes ``customers.jsonl`` and ``interactions.jsonl`` to ``--out`` (default
``var/demo``) and, unless ``--no-db``, loads them into the configured
database together with the catalogue.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from core.settings import PROJECT_ROOT

CATALOGUE = PROJECT_ROOT / "bot" / "catalogue" / "items.jsonl"
DEMO_DIR = PROJECT_ROOT / "var" / "demo"
# Histories end here (a fixed date, so the same seed gives the same files): 2025-06-30 UTC.
END = 1751241600.0
DAY = 86400.0

# segment: share of customers, age bands, products held from the start, topics asked about.
SEGMENTS: Dict[str, dict] = {
    "student": dict(share=0.18, ages=["18-24"], holds=["student-account"],
                    topics=["top_up_methods", "card_declined", "virtual_card", "mobile_wallet", "change_pin", "failed_transfer"]),
    "young_professional": dict(share=0.24, ages=["25-34", "35-44"], holds=["current-account"],
                               topics=["mobile_wallet", "transfer_fees", "direct_debit", "pending_payment", "card_payment_fee", "verify_identity"]),
    "family": dict(share=0.18, ages=["35-44", "45-54"], holds=["joint-account", "current-account"],
                   topics=["direct_debit", "statement_request", "refund_not_showing", "change_personal_details", "card_arrival"]),
    "traveller": dict(share=0.16, ages=["25-34", "35-44", "45-54", "55-64"], holds=["current-account"],
                      topics=["exchange_rate", "card_payment_fee", "cash_withdrawal_fee", "card_declined", "transfer_fees"]),
    "retired": dict(share=0.14, ages=["65+"], holds=["current-account", "easy-saver"],
                    topics=["statement_request", "change_pin", "verify_identity", "change_personal_details", "card_arrival"]),
    "small_business": dict(share=0.10, ages=["25-34", "35-44", "45-54"], holds=["business-account"],
                           topics=["transfer_fees", "failed_transfer", "account_details", "pending_payment", "contactless_not_working"]),
}
# Items a segment is drawn to beyond its topics (looked at, sometimes taken).
LEANINGS: Dict[str, List[str]] = {
    "student": ["round-ups", "budgets", "virtual-cards", "mobile-wallet", "arranged-overdraft", "easy-saver"],
    "young_professional": ["easy-saver", "cash-isa", "rewards-credit-card", "early-pay", "northwind-invest", "first-home-mortgage", "budgets"],
    "family": ["junior-isa", "junior-account", "home-insurance", "regular-saver", "budgets", "personal-loan"],
    "traveller": ["travel-credit-card", "currency-pockets", "travel-insurance", "northwind-plus", "travel-money", "travel-notifications"],
    "retired": ["fixed-saver-1y", "cash-isa", "trusted-contacts", "guide-spot-a-scam", "spending-notifications"],
    "small_business": ["card-reader", "international-payments", "scheduled-payments", "arranged-overdraft", "spending-notifications"],
}
# What customers tend to look at next after an item (the order the sequence model learns).
NEXT: Dict[str, List[str]] = {
    "travel-notifications": ["travel-credit-card", "currency-pockets"],
    "guide-card-abroad": ["travel-credit-card", "northwind-plus", "travel-notifications"],
    "travel-credit-card": ["travel-insurance", "currency-pockets"],
    "currency-pockets": ["travel-money", "international-payments"],
    "easy-saver": ["cash-isa", "round-ups", "regular-saver"],
    "round-ups": ["easy-saver", "budgets"],
    "cash-isa": ["fixed-saver-1y", "northwind-invest"],
    "junior-account": ["junior-isa"],
    "first-home-mortgage": ["home-insurance"],
    "mobile-wallet": ["virtual-cards", "phone-insurance"],
    "virtual-cards": ["mobile-wallet"],
    "budgets": ["round-ups", "regular-saver"],
    "guide-spot-a-scam": ["spending-notifications", "card-controls"],
    "business-account": ["card-reader", "international-payments"],
    "guide-failed-transfers": ["scheduled-payments"],
    "guide-pending-payments": ["spending-notifications"],
}
KIND_WEIGHTS = {"purchase": 3.0, "click": 1.5, "view": 1.0, "topic": 1.0, "dismiss": 1.0}


def load_catalogue(path: Path) -> pd.DataFrame:
    """The catalogue, checked; refuses a generator whose item ids the catalogue lacks."""
    from recommender.data import load_items

    items = load_items(path)
    known = set(items["item_id"])
    used = {i for s in SEGMENTS.values() for i in s["holds"]} | {i for v in LEANINGS.values() for i in v} \
        | set(NEXT) | {i for v in NEXT.values() for i in v}
    missing = sorted(used - known)
    if missing:
        raise SystemExit(f"the generator refers to items missing from {path}: {', '.join(missing)}")
    return items


def generate(items: pd.DataFrame, customers: int = 300, seed: int = 7, days: int = 180):
    """(customers, interactions) DataFrames of synthetic demo customers; the same seed gives the same rows."""
    rng = np.random.default_rng(seed)
    active = items[items["active"]]
    by_tag: Dict[str, List[str]] = {}
    for item_id, tags in zip(active["item_id"], active["tags"]):
        for tag in tags:
            by_tag.setdefault(tag, []).append(item_id)
    names = list(SEGMENTS)
    shares = np.array([SEGMENTS[s]["share"] for s in names])
    people, events = [], []
    for number in range(1, customers + 1):
        segment = names[rng.choice(len(names), p=shares / shares.sum())]
        spec = SEGMENTS[segment]
        customer_id = f"demo-{number:04d}"
        people.append({"customer_id": customer_id, "segment": segment, "age_band": str(rng.choice(spec["ages"]))})
        now = END - days * DAY * rng.uniform(0.6, 1.0)

        def add(item: Optional[str], kind: str, topic: Optional[str] = None) -> None:
            events.append({"customer_id": customer_id, "item_id": item, "kind": kind, "topic": topic,
                           "timestamp": round(now, 3), "weight": KIND_WEIGHTS[kind]})

        for item in spec["holds"]:  # what they already hold when the history starts
            add(item, "purchase")
            now += DAY * rng.uniform(0.5, 5)
        previous: Optional[str] = None
        for _ in range(int(rng.integers(3, 12))):
            now += DAY * rng.exponential(10)
            if now >= END:
                break
            follow = NEXT.get(previous or "", [])
            if follow and rng.random() < 0.55:  # carry on from what they last looked at
                item = str(rng.choice(follow))
            elif rng.random() < 0.55:  # a conversation topic, then something about it
                topic = str(rng.choice(spec["topics"]))
                add(None, "topic", topic)
                now += 60 * rng.uniform(1, 10)
                candidates = by_tag.get(topic, [])
                if not candidates or rng.random() < 0.3:
                    continue
                item = str(rng.choice(candidates))
            else:
                item = str(rng.choice(LEANINGS[segment]))
            roll = rng.random()
            if roll < 0.08:
                add(item, "dismiss")
                previous = None
                continue
            add(item, "view")
            if roll > 0.55:
                now += 60 * rng.uniform(1, 30)
                add(item, "click")
            if roll > 0.85 and items.loc[items["item_id"] == item, "kind"].iloc[0] == "product":
                now += DAY * rng.uniform(0.1, 3)
                if now < END:
                    add(item, "purchase")
            previous = item
    customers_frame = pd.DataFrame(people, columns=["customer_id", "segment", "age_band"])
    interactions = pd.DataFrame(events, columns=["customer_id", "item_id", "kind", "topic", "timestamp", "weight"])
    return customers_frame, interactions


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=300, help="how many synthetic customers (default 300)")
    parser.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same files")
    parser.add_argument("--days", type=int, default=180, help="how many days of history")
    parser.add_argument("--catalogue", type=Path, default=CATALOGUE)
    parser.add_argument("--out", type=Path, default=DEMO_DIR, help="folder for customers.jsonl and interactions.jsonl")
    parser.add_argument("--no-db", action="store_true", help="write the files only, do not load the database")
    args = parser.parse_args(argv)
    if args.customers < 1:
        parser.error("--customers must be at least 1")

    from recommender.data import write_jsonl

    items = load_catalogue(args.catalogue)
    customers, interactions = generate(items, args.customers, args.seed, args.days)
    label = {"synthetic": True}
    write_jsonl(customers, args.out / "customers.jsonl", label)
    write_jsonl(interactions, args.out / "interactions.jsonl", label)
    print(f"wrote {len(customers)} SYNTHETIC demo customers and {len(interactions)} interactions to {args.out}")
    if not args.no_db:
        from core import db
        from recommender import store

        engine = db.connect()
        removed = store.erase_synthetic(engine)
        store.save_items(engine, items)
        store.save_customers(engine, customers, synthetic=True)
        store.add_interactions(engine, interactions)
        shown = engine.url.render_as_string(hide_password=True)
        print(f"loaded them into {shown} (replacing {removed} earlier synthetic customers), with {len(items)} catalogue items")
    return 0


if __name__ == "__main__":
    sys.exit(main())
