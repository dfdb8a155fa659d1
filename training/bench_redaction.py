"""Measure the redactor on a labelled sample, beside the redactor it replaced.

    python -m training.bench_redaction --sample tests/fixtures/redaction_v2.jsonl [--errors holdout] [--json OUT]

For each redactor (``new``: `core.redaction`, ``current``: the frozen copy of
the redactor before issue 13, `training.redaction_baseline`), and for each
part of the sample (tuning, holdout, all, Chinese messages), a table per kind:

- labelled: spans of that kind in the sample;
- found: spans the redactor gave that kind;
- recall: labelled spans hidden, whatever kind the redactor called them
  (a span counts as hidden when at least 90 % of its non-space characters are
  masked: a name or address that keeps one letter is still hidden, one that
  keeps its surname is not);
- precision: of the characters the redactor masked as that kind, the share
  that lie inside some labelled span (precision by masked character);
- clean changed: share of messages with nothing to redact that the redactor changed;
- p50 / p99: milliseconds per message for `find_personal_data` (the work
  `redact` does), one message at a time on one core, `time.perf_counter`;
  each message's time is the median of 5 calls, so that another process
  taking the core for a few milliseconds does not count as the redactor's.

The old redactor knows fewer kinds; its rows for kinds it does not know show
what it hides by chance (e.g. an SSN caught as a phone).
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "fixtures" / "redaction_v2.jsonl"
KINDS = ("CARD", "IBAN", "ACCOUNT", "SORT_CODE", "EMAIL", "PHONE", "NAME", "ADDRESS", "DOB", "PASSPORT", "NATIONAL_ID", "PIN")
REDACTORS = {"new": "core.redaction", "current": "training.redaction_baseline"}
HIDDEN = 0.9


def load(path: Path) -> List[Dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    for row in rows:  # the older sample's spans are {kind, start, end}
        row["spans"] = [[s["start"], s["end"], s["kind"]] if isinstance(s, dict) else s for s in row.get("spans", [])]
    return rows


def _spans(found) -> List[tuple]:
    return [(p.start, p.end, p.kind) for p in found]


def run(module, rows: Sequence[Dict[str, Any]], repeats: int = 5) -> List[Dict[str, Any]]:
    """Found spans and time for every row: the median of `repeats` timed calls, one message at a time."""
    out = []
    find = module.find_personal_data
    for row in rows[:50]:  # warm up
        find(row["text"])
    gc.collect()
    gc.disable()
    try:
        for row in rows:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                found = find(row["text"])
                times.append(time.perf_counter() - t0)
            ms = statistics.median(times) * 1000.0
            out.append({"found": _spans(found), "ms": ms, "changed": module.redact(row["text"]) != row["text"]})
    finally:
        gc.enable()
    return out


def _percentile(values: List[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]


def score(rows: Sequence[Dict[str, Any]], results: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    per: Dict[str, Dict[str, float]] = {k: {"labelled": 0, "found": 0, "hit": 0, "masked": 0, "masked_ok": 0} for k in KINDS}
    total = {"labelled": 0, "found": 0, "hit": 0, "masked": 0, "masked_ok": 0}
    clean = clean_changed = 0
    misses: List[Dict[str, Any]] = []
    for row, res in zip(rows, results):
        text = row["text"]
        gold = [tuple(s) for s in row["spans"]]
        masked = [False] * len(text)
        for start, end, _ in res["found"]:
            for i in range(start, end):
                masked[i] = True
        inside = [False] * len(text)
        for start, end, _ in gold:
            for i in range(start, end):
                inside[i] = True
        row_missed, row_extra = [], []
        for start, end, kind in gold:
            chars = [i for i in range(start, end) if not text[i].isspace()]
            hidden = sum(masked[i] for i in chars) / max(1, len(chars)) >= HIDDEN
            bucket = per.setdefault(kind, {"labelled": 0, "found": 0, "hit": 0, "masked": 0, "masked_ok": 0})
            bucket["labelled"] += 1
            total["labelled"] += 1
            if hidden:
                bucket["hit"] += 1
                total["hit"] += 1
            else:
                row_missed.append(f"{kind}:{text[start:end]}")
        for start, end, kind in res["found"]:
            bucket = per.setdefault(kind, {"labelled": 0, "found": 0, "hit": 0, "masked": 0, "masked_ok": 0})
            bucket["found"] += 1
            total["found"] += 1
            chars = [i for i in range(start, end) if not text[i].isspace()]
            ok = sum(inside[i] for i in chars)
            bucket["masked"] += len(chars)
            bucket["masked_ok"] += ok
            total["masked"] += len(chars)
            total["masked_ok"] += ok
            if ok < len(chars):
                row_extra.append(f"{kind}:{text[start:end]}")
        if not gold:
            clean += 1
            clean_changed += bool(res["changed"])
        if row_missed or row_extra:
            misses.append({"text": text, "missed": row_missed, "extra": row_extra, "split": row.get("split")})
    times = [r["ms"] for r in results]
    return {
        "messages": len(rows), "per_kind": per, "total": total, "clean": clean, "clean_changed": clean_changed,
        "p50_ms": _percentile(times, 0.5), "p99_ms": _percentile(times, 0.99), "misses": misses,
    }


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "-"


def table(title: str, scores: Dict[str, Dict[str, Any]]) -> str:
    names = list(scores)
    head = "| kind | labelled | " + " | ".join(f"{n} found | {n} recall | {n} precision" for n in names) + " |"
    lines = [f"### {title} ({scores[names[0]]['messages']} messages)", "", head, "|" + "---|" * (2 + 3 * len(names))]
    for kind in KINDS:
        first = scores[names[0]]["per_kind"].get(kind, {})
        cells = []
        for n in names:
            k = scores[n]["per_kind"].get(kind, {"labelled": 0, "found": 0, "hit": 0, "masked": 0, "masked_ok": 0})
            cells.append(f"{k['found']} | {_ratio(k['hit'], k['labelled'])} | {_ratio(k['masked_ok'], k['masked'])}")
        lines.append(f"| {kind} | {first.get('labelled', 0)} | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        t = scores[n]["total"]
        cells.append(f"{t['found']} | {_ratio(t['hit'], t['labelled'])} | {_ratio(t['masked_ok'], t['masked'])}")
    lines.append(f"| all kinds | {scores[names[0]]['total']['labelled']} | " + " | ".join(cells) + " |")
    lines.append("")
    for n in names:
        s = scores[n]
        share = 100.0 * s["clean_changed"] / s["clean"] if s["clean"] else 0.0
        lines.append(f"- {n}: clean messages changed {s['clean_changed']}/{s['clean']} = {share:.1f} %; "
                     f"p50 {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms a message")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--errors", choices=["tuning", "holdout", "all", "handwritten-1", "handwritten-2", "handwritten-3"], help="also list every message a redactor got wrong in that part (new redactor)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--only-new", action="store_true", help="skip the old redactor")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per message (the median is kept)")
    parser.add_argument("--clean-csv", type=Path, nargs="*", default=[],
                        help="CSV files with a 'text' column of messages without personal data (e.g. BANKING77's "
                             "train.csv and test.csv): how many each redactor changes")
    args = parser.parse_args(argv)
    try:  # one core: the figures must not depend on how many the machine has
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    rows = load(args.sample)
    parts = {
        "tuning": [i for i, r in enumerate(rows) if r.get("split") == "tuning"],
        "holdout": [i for i, r in enumerate(rows) if r.get("split") == "holdout"],
        "all": list(range(len(rows))),
        "Chinese (all splits)": [i for i, r in enumerate(rows) if r.get("lang") == "zh"],
        "handwritten-1 (holdout)": [i for i, r in enumerate(rows) if r.get("source") == "handwritten"],
        "handwritten-2 (holdout)": [i for i, r in enumerate(rows) if r.get("source") == "handwritten-2"],
        "handwritten-3 (holdout)": [i for i, r in enumerate(rows) if r.get("source") == "handwritten-3"],
    }
    parts = {name: idx for name, idx in parts.items() if idx}
    names = ["new"] if args.only_new else ["new", "current"]
    results = {n: run(importlib.import_module(REDACTORS[n]), rows, args.repeats) for n in names}
    print(f"Redaction on {args.sample.name}: {len(rows)} messages; recall = labelled spans hidden (>= 90 % of their "
          f"characters masked, any kind); precision = masked characters inside a labelled span\n")
    report: Dict[str, Any] = {}
    for part, idx in parts.items():
        chosen = [rows[i] for i in idx]
        scores = {n: score(chosen, [results[n][i] for i in idx]) for n in names}
        report[part] = {n: {k: v for k, v in s.items() if k != "misses"} for n, s in scores.items()}
        print(table(part, scores) + "\n")
        if args.errors and part.split(" ")[0] == args.errors:
            for miss in scores["new"]["misses"]:
                print(f"- {miss['text']!r}\n    missed {miss['missed']}\n    extra  {miss['extra']}")
            print()
    if args.clean_csv:
        import csv

        texts: List[str] = []
        for path in args.clean_csv:
            with path.open(encoding="utf-8") as fh:
                texts += [row["text"] for row in csv.DictReader(fh)]
        print(f"### Messages without personal data ({len(texts)} from {', '.join(p.name for p in args.clean_csv)})\n")
        for n in names:
            module = importlib.import_module(REDACTORS[n])
            changed = [t for t in texts if module.redact(t) != t]
            report.setdefault("clean_csv", {})[n] = len(changed)
            print(f"- {n}: {len(changed)} changed ({100.0 * len(changed) / max(1, len(texts)):.2f} %)")
            for text in changed[:10]:
                print(f"    {module.redact(text)[:120]!r}")
        print()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
