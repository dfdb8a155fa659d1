"""Review the messages the assistant handled badly, and turn them into training data.

    python -m training.review list [--reason fallback] [--all]
    python -m training.review intent 12 card_arrival      # the message is an example of an intent
    python -m training.review answer 13 "You can ..." [--intent top_up_methods]
    python -m training.review discard 14
    python -m training.review export [--nlu var/review/reviewed_nlu.yml] [--history var/review/reviewed.jsonl]

Items come from the actions (low confidence, fallback, thumbs-down, handoff),
already redacted. `export` writes the reviewed items where the next
`python -m training.retrain` reads them: NLU examples and question/answer
pairs into var/review/ (ignored by git and the Docker builds, rewritten when a
customer is erased); retrain adds them to `rasa train` and `training.build_index`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from core import review
from core.domain import DOMAIN_DIR, domain_intents

DEFAULT_NLU = review.DEFAULT_NLU_EXPORT
DEFAULT_HISTORY = review.DEFAULT_HISTORY_EXPORT
DEFAULT_DOMAIN = DOMAIN_DIR


def _show(item: dict) -> str:
    confidence = "" if item.get("confidence") is None else f" {item['confidence']:.2f}"
    guess = f" [{item.get('predicted_intent') or '-'}{confidence}]"
    outcome = ""
    if item.get("assigned_intent"):
        outcome += f" -> intent {item['assigned_intent']}"
    if item.get("answer"):
        outcome += f" -> answer {item['answer'][:60]!r}"
    return f"#{item['id']:<5} {item['status']:<9} {item['reason']:<14}{guess} {item['text']!r}{outcome}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="database URL (default: the configured one)")
    parser.add_argument("--domain", type=Path, default=DEFAULT_DOMAIN, help="domain file or folder the intents must be in")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="items waiting for review")
    listing.add_argument("--reason", choices=review.REASONS)
    listing.add_argument("--all", action="store_true", help="also reviewed and discarded items")
    listing.add_argument("--limit", type=int, default=50)
    intent = commands.add_parser("intent", help="the message is an example of INTENT")
    intent.add_argument("item", type=int)
    intent.add_argument("intent")
    answer = commands.add_parser("answer", help="the right answer to the message")
    answer.add_argument("item", type=int)
    answer.add_argument("text")
    answer.add_argument("--intent")
    discard = commands.add_parser("discard", help="nothing to learn from the message")
    discard.add_argument("item", type=int)
    export = commands.add_parser("export", help="write reviewed items into training files")
    export.add_argument("--nlu", type=Path, default=DEFAULT_NLU)
    export.add_argument("--history", type=Path, default=DEFAULT_HISTORY)
    args = parser.parse_args(argv)

    try:
        known = domain_intents(args.domain)
        if args.command == "list":
            items = review.list_items(status=None if args.all else review.OPEN, reason=args.reason,
                                      limit=args.limit, db_url=args.db)
            for item in items:
                print(_show(item))
            summary = ", ".join(f"{n} {s}" for s, n in sorted(review.counts(args.db).items())) or "empty"
            print(f"review queue: {summary}")
        elif args.command in ("intent", "answer"):
            chosen = args.intent
            if chosen and chosen not in known:
                print(f"error: intent '{chosen}' is not in the domain ({args.domain}); known intents: "
                      f"{', '.join(known)}", file=sys.stderr)
                return 2
            if args.command == "intent":
                print(_show(review.assign_intent(args.item, chosen, db_url=args.db)))
            else:
                print(_show(review.answer(args.item, args.text, intent=chosen, db_url=args.db)))
        elif args.command == "discard":
            print(_show(review.discard(args.item, db_url=args.db)))
        elif args.command == "export":
            written = review.export(args.nlu, args.history, known_intents=known, db_url=args.db)
            print(f"wrote {written['nlu_examples']} NLU examples to {args.nlu} and "
                  f"{written['history_pairs']} question/answer pairs to {args.history}")
    except review.ReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
