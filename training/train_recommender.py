"""Train the recommender and write the folder the action server loads.

    python -m training.train_recommender                     # catalogue + the database's interactions
    python -m training.train_recommender --interactions var/demo/interactions.jsonl \\
        --customers var/demo/customers.jsonl --out artifacts/recommender
    python -m training.train_recommender --set sequence_epochs=10 --set diversity=0.7

The catalogue (``bot/catalogue/items.jsonl`` by default) is always read from
its file. Interactions and customers come from files when given (CSV or
JSONL, checked row by row: bad rows are reported with their line numbers),
otherwise from the project database, in which case the catalogue is also
written to the database's items table so that every process sees the same
items. ``--set name=value`` overrides any `recommender.RecommenderConfig`
setting. The folder (``recommender_dir`` of the settings by default) is
replaced as a whole when training succeeds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from tqdm.auto import tqdm

from core.settings import PROJECT_ROOT, get_settings

CATALOGUE = PROJECT_ROOT / "bot" / "catalogue" / "items.jsonl"


def parse_overrides(pairs: Sequence[str]) -> Dict[str, Any]:
    """{'name': value} from 'name=value' strings; values are read as JSON when they parse, else kept as text."""
    overrides = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--set expects name=value, got {pair!r}")
        try:
            overrides[name.strip()] = json.loads(raw)
        except ValueError:
            overrides[name.strip()] = raw
    return overrides


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=Path, default=CATALOGUE, help="catalogue file (CSV or JSONL)")
    parser.add_argument("--interactions", type=Path, help="interactions file (CSV or JSONL); default: the database")
    parser.add_argument("--customers", type=Path, help="customers file (CSV or JSONL); default: the database, or none with --interactions")
    parser.add_argument("--out", type=Path, default=None, help="model folder (default: recommender_dir of the settings)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override a RecommenderConfig setting (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from recommender import ConfigError, DataFileError, Recommender, load_customers, load_interactions, load_items
    from recommender import store

    out = args.out or Path(get_settings().recommender_dir)
    config = parse_overrides(args.overrides)
    config.setdefault("show_progress", not args.quiet)
    steps = tqdm(total=4, desc="recommender", disable=args.quiet, file=sys.stderr)
    try:
        steps.set_postfix_str("reading the catalogue")
        items = load_items(args.items)
        steps.update()
        steps.set_postfix_str("reading interactions")
        if args.interactions:
            interactions = load_interactions(args.interactions)
            customers = load_customers(args.customers) if args.customers else None
            source = str(args.interactions)
        else:
            from core import db

            engine = db.connect()
            store.save_items(engine, items)  # the catalogue file is the source of truth for items
            interactions = store.read_interactions(engine)
            customers = load_customers(args.customers) if args.customers else store.read_customers(engine)
            source = engine.url.render_as_string(hide_password=True)
        steps.update()
        if interactions.empty:
            print(f"warning: no interactions in {source}; the recommender will know only the catalogue "
                  f"(run `python -m training.generate_demo_customers` for demo data)", file=sys.stderr)
        steps.set_postfix_str("fitting")
        started = time.perf_counter()
        model = Recommender.fit(interactions, items, customers=customers, **config)
        steps.update()
        steps.set_postfix_str("saving")
        model.save(out)
        steps.update()
    except (DataFileError, ConfigError, FileNotFoundError) as exc:
        steps.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    steps.close()
    parts = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in model.fit_seconds.items())
    print(f"trained on {len(interactions):,} interactions of {len(model.profiles):,} customers from {source}, "
          f"{len(model.item_ids)} items, in {time.perf_counter() - started:.1f}s ({parts})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
