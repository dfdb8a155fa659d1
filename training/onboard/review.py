"""Review an onboarding project's candidate intents from the command line.

``python -m training.onboard review PROJECT <command> ...`` (the package's
CLI hands everything after the word ``review`` to `main`)::

    list                                   the candidates, with flags and the discovery estimate
    show ID                                one candidate: examples, drafted response, kind, entity spans
    accept ID... | discard ID... | reopen ID
    rename ID NAME
    merge ID ID... [--name NAME]           the first keeps its id; the others are emptied and discarded
    split ID --examples EX,EX... --name NAME
    move EXAMPLE_ID --to ID
    response ID (TEXT | --file F)
    kind ID question|task
    accept-all [--min-size N]              accept every proposed candidate of at least N examples
    history                                the decision log

Every change is one decision recorded through `core.onboarding.OnboardingProject.decide`
(by ``--by NAME``, else ``$USER``), the same log the inbox's onboarding page
writes; a decision that cannot apply prints why and exits 2, leaving the state
as it was.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

from core.onboarding import (KINDS, SMALL_CANDIDATE, Candidate, OnboardingProject, Proposal, ReviewError,
                             describe_decision, describe_estimate, flags)

SHOWN_EXAMPLES = 200  # `show` lists at most this many examples of a candidate


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with columns as wide as their widest cell."""
    cells = [[str(v) for v in header]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _list(project: OnboardingProject) -> str:
    state = project.reviewed()
    rows = [(c.id, c.name, c.status, c.kind, c.size, f"{c.cohesion:.2f}", "; ".join(flags(state, c)) or "-",
             ", ".join(c.words[:5])) for c in state.candidates]
    counts = {s: sum(1 for c in state.candidates if c.status == s) for s in ("proposed", "accepted", "discarded")}
    summary = ", ".join(f"{k} {v}" for k, v in state.summary.items()) if state.summary else "-"
    return "\n".join([
        f"generation {state.generation}: {len(state.candidates)} candidates "
        f"({', '.join(f'{n} {s}' for s, n in counts.items())}); {describe_estimate(state)}",
        f"read: {summary}",
        "",
        _table(("id", "name", "status", "kind", "size", "cohesion", "flags", "top words"), rows),
    ])


def _show(project: OnboardingProject, candidate_id: str) -> str:
    state = project.reviewed()
    c = state.candidate(candidate_id)
    out = [f"{c.id}  {c.name}  [{c.status}, {c.kind}, {c.size} examples, cohesion {c.cohesion:.2f}, {c.origin}]",
           f"flags: {'; '.join(flags(state, c)) or '-'}",
           f"top words: {', '.join(c.words) or '-'}", "", "examples (* = outlier):"]
    out += [f"  {'*' if e.outlier else ' '} {e.id}  {e.text}" + (f"   [{e.source}]" if e.source else "")
            for e in c.examples[:SHOWN_EXAMPLES]]
    if c.size > SHOWN_EXAMPLES:
        out.append(f"  ... and {c.size - SHOWN_EXAMPLES} more")
    out += ["", "drafted response:", f"  {c.response or '(none)'}"]
    if c.response_alternatives:
        out.append("alternatives:")
        out += [f"  {n}. {a}" for n, a in enumerate(c.response_alternatives, 1)]
    out += ["", f"kind: {c.kind}"] + [f"  - {e}" for e in c.kind_evidence]
    out.append("entity-looking spans:")
    out += [f"  {s.get('kind')}: {s.get('text')} ({s.get('count', 1)}x)" for s in c.entity_spans] or ["  -"]
    return "\n".join(out)


def _history(project: OnboardingProject) -> str:
    rows = []
    for d in project.decisions():
        detail = {k: v for k, v in d.items() if k not in ("action", "at", "by", "generation")}
        text = ", ".join(f"{k}={v if not isinstance(v, list) else ','.join(map(str, v))}" for k, v in sorted(detail.items()))
        rows.append((d.get("at", ""), d.get("by", "") or "-", d.get("generation", ""), d.get("action", ""),
                     text if len(text) <= 100 else text[:97] + "..."))
    if not rows:
        return "no decisions yet"
    return _table(("at", "by", "gen", "action", "detail"), rows)


def _proposed_at_least(state: Proposal, min_size: int) -> List[Candidate]:
    return [c for c in state.candidates if c.status == "proposed" and c.size >= min_size]


def _parser() -> argparse.ArgumentParser:
    by = argparse.ArgumentParser(add_help=False)
    by.add_argument("--by", default=argparse.SUPPRESS, help="who decides (default: $USER)")
    parser = argparse.ArgumentParser(prog="python -m training.onboard review",
                                     description="Review the candidate intents of an onboarding project.")
    parser.add_argument("project", help="the onboarding project folder (--out of discovery)")
    parser.add_argument("--by", default=None, help="who decides (default: $USER)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser("list", help="the candidates with their flags")
    sub.add_parser("show", help="one candidate in full").add_argument("id")
    sub.add_parser("history", help="the decision log")
    for name in ("accept", "discard"):
        sub.add_parser(name, parents=[by], help=f"{name} candidates").add_argument("ids", nargs="+", metavar="ID")
    sub.add_parser("reopen", parents=[by], help="back to proposed").add_argument("id")
    p = sub.add_parser("rename", parents=[by], help="rename a candidate")
    p.add_argument("id"), p.add_argument("name")
    p = sub.add_parser("merge", parents=[by], help="merge candidates into the first")
    p.add_argument("ids", nargs="+", metavar="ID"), p.add_argument("--name")
    p = sub.add_parser("split", parents=[by], help="split examples off into a new intent")
    p.add_argument("id"), p.add_argument("--examples", required=True, help="example ids, comma-separated")
    p.add_argument("--name", required=True)
    p = sub.add_parser("move", parents=[by], help="move an example to another candidate")
    p.add_argument("example"), p.add_argument("--to", required=True)
    p = sub.add_parser("response", parents=[by], help="set the response of a candidate")
    p.add_argument("id"), p.add_argument("text", nargs="?"), p.add_argument("--file", type=Path)
    p = sub.add_parser("kind", parents=[by], help="question (answered) or task (form or handoff)")
    p.add_argument("id"), p.add_argument("kind", choices=KINDS)
    p = sub.add_parser("accept-all", parents=[by], help="accept every proposed candidate of at least --min-size")
    p.add_argument("--min-size", type=int, default=SMALL_CANDIDATE,
                   help=f"fewest examples a candidate needs (default {SMALL_CANDIDATE})")
    return parser


def _response_text(args: argparse.Namespace) -> str:
    if (args.text is None) == (args.file is None):
        raise ReviewError("give the response either as TEXT or with --file F, not both or neither")
    if args.file is None:
        return args.text
    try:
        return args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewError(f"{args.file}: cannot read the response: {exc}") from exc


def _decisions(args: argparse.Namespace, project: OnboardingProject) -> List[Dict[str, Any]]:
    """The decisions a changing command stands for, in order."""
    cmd = args.command
    if cmd in ("accept", "discard"):
        return [{"action": cmd, "id": i} for i in args.ids]
    if cmd == "reopen":
        return [{"action": "reopen", "id": args.id}]
    if cmd == "rename":
        return [{"action": "rename", "id": args.id, "name": args.name}]
    if cmd == "merge":
        return [{"action": "merge", "ids": args.ids, **({"name": args.name} if args.name else {})}]
    if cmd == "split":
        examples = [e.strip() for e in args.examples.split(",") if e.strip()]
        return [{"action": "split", "id": args.id, "examples": examples, "name": args.name}]
    if cmd == "move":
        return [{"action": "move", "example": args.example, "to": args.to}]
    if cmd == "response":
        return [{"action": "response", "id": args.id, "text": _response_text(args)}]
    if cmd == "kind":
        return [{"action": "kind", "id": args.id, "kind": args.kind}]
    if cmd == "accept-all":
        return [{"action": "accept", "id": c.id} for c in _proposed_at_least(project.reviewed(), args.min_size)]
    raise ReviewError(f"unknown review command '{cmd}'")


def main(argv: List[str]) -> int:
    """Run one review command on the project named first in `argv`; 0 done, 2 refused or bad usage."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage and why
        return int(exc.code or 0)
    project = OnboardingProject(args.project)
    by = args.by or os.environ.get("USER") or os.environ.get("USERNAME") or ""
    try:
        if args.command in ("list", "show", "history"):
            shown = {"list": lambda: _list(project), "show": lambda: _show(project, args.id),
                     "history": lambda: _history(project)}[args.command]()
            print(shown)
            return 0
        decisions = _decisions(args, project)
        if not decisions:
            print("nothing to do: no proposed candidate has that many examples")
        for decision in decisions:
            print(describe_decision(project.decide(decision, by=by)))
    except ReviewError as exc:
        print(f"review: {exc}", file=sys.stderr)
        return 2
    return 0
