"""How the word-list frustration detector (`nlu.frustration`) does on a labelled sample.

    python -m training.eval_frustration tests/fixtures/frustration.csv [--lexicon-only] [--errors]

Prints precision, recall and F1 on each split of the sample (its ``tuning`` rows
revised the word list; its ``holdout`` rows were never used for tuning).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from nlu.frustration import FrustrationDetector, evaluate, read_sample


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print the detector's precision and recall on each split of a labelled sample."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sample", help="CSV with columns text, previous, label, split")
    parser.add_argument("--threshold", type=float, default=1.0)
    parser.add_argument("--similar-vote", type=float, default=0.9)
    parser.add_argument("--lexicon-only", action="store_true", help="leave the sentence encoder out")
    parser.add_argument("--errors", action="store_true", help="list the messages it gets wrong")
    args = parser.parse_args(argv)
    encoder = None
    if not args.lexicon_only:
        from core.encoder import load_encoder

        encoder = load_encoder(None)
    detector = FrustrationDetector(threshold=args.threshold, encoder=encoder, similar_vote=args.similar_vote)
    splits = sorted({row.get("split") or "" for row in read_sample(args.sample)} - {""})
    for split in [*splits, None]:
        rows = read_sample(args.sample, split)
        if not rows:
            continue
        m = evaluate(detector, rows)
        print(
            f"{split or 'all':>8}: n={len(rows):3d} precision={m['precision']:.3f} recall={m['recall']:.3f} "
            f"f1={m['f1']:.3f} (tp={m['tp']} fp={m['fp']} fn={m['fn']} tn={m['tn']})"
        )
    if args.errors:
        for row in read_sample(args.sample):
            previous = [row["previous"]] if row.get("previous") else []
            verdict = detector.assess(row["text"], previous)
            if verdict.frustrated != (row["label"] == "1"):
                print(f"  [{row['split']}] label={row['label']} score={verdict.score} {row['text']!r} {verdict.evidence}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
