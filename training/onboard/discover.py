"""``python -m training.onboard --transcripts FOLDER --out PROJECT``: propose intents from chat history.

Reads the transcripts (`training.onboard.transcripts`, personal data
redacted as it is read), finds the customers' requests and the answers that
resolved them (`training.onboard.requests`), clusters the requests into
candidate intents without being told how many (`training.onboard.cluster`),
describes each (`training.onboard.describe`) and writes the proposal that
supervisors review (`core.onboarding`).

Run again on new transcripts, it starts from the reviewed state: requests
already seen are skipped; a new request close to a reviewed candidate
(accepted, proposed or discarded) joins it; only the rest are clustered
into new candidates. The reviewed candidates keep their ids, names,
statuses, kinds and responses; the decisions log keeps every decision.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.encoder import load_encoder
from core.language import configured_language
from core.onboarding import Candidate, Example, OnboardingProject, Proposal, ReviewError
from training.onboard import cluster as clustering
from training.onboard import describe

NEAR_DUPLICATE = 0.85  # centroid cosine (frozen encoder) above which two candidates are flagged as near-duplicates
OUTLIER_SPREAD = 2.0  # an example further than mean - 2 std from its candidate's centre is an outlier


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-9)


def _encode(encoder, texts: Sequence[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, 1), dtype="float32")
    return np.asarray(encoder.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                     show_progress_bar=False), dtype="float32")


def _example(request) -> Example:
    return Example(id=request.id, text=request.text, answer=request.answer if request.resolved else "",
                   conversation=request.conversation, source=request.source)


def describe_candidates(groups: List[List[Any]], frozen: List[np.ndarray], encoder, language: str, taken: set,
                        first_id: int) -> Tuple[List[Candidate], np.ndarray]:
    """(candidates, their centres) for groups of requests: names, words, kind, answer, spans, cohesion, outliers."""
    telling = describe.telling_words([[r.text for r in g] for g in groups], language)
    out, centres = [], []
    for n, (group, vec, words) in enumerate(zip(groups, frozen, telling)):  # cohesion in the encoder's own space
        centre = _unit(vec.mean(axis=0, keepdims=True))[0]
        sims = vec @ centre
        floor = float(sims.mean() - OUTLIER_SPREAD * sims.std()) if len(group) > 3 else -1.0
        answered = [r for r in group if r.answer]
        answer_vectors = _encode(encoder, [r.answer for r in answered]) if answered else None
        resolved = [i for i, r in enumerate(answered) if r.resolved]
        draft, alternatives = describe.typical_answers(
            [answered[i].answer for i in resolved], answer_vectors[resolved] if resolved else None,
            [answered[i].rating for i in resolved])
        kind, evidence = describe.kind_of([r.answer for r in answered], answer_vectors,
                                          [getattr(r, "agent_turns", 1) for r in answered], language)
        examples = [_example(r) for r in group]
        for e, s in zip(examples, sims):
            e.outlier = bool(s < floor)
        order = np.argsort(-sims)  # the most typical requests first
        cid = f"c{first_id + n}"
        out.append(Candidate(
            id=cid, name=describe.intent_name(words, taken, f"intent_{first_id + n}"),
            examples=[examples[i] for i in order], kind=kind, kind_evidence=evidence,
            response=draft if kind == "question" else "", response_alternatives=alternatives, words=words,
            entity_spans=describe.entity_spans([r.text for r in group]), cohesion=round(float(sims.mean()), 3),
        ))
        centres.append(centre)
    return out, np.stack(centres)


def flag_near_duplicates(candidates: List[Candidate], centres: np.ndarray) -> None:
    """Mark pairs of candidates whose requests mean nearly the same (centres in the encoder's space)."""
    if len(candidates) < 2:
        return
    sims = centres @ centres.T
    for i, a in enumerate(candidates):
        a.near_duplicates.extend(b.id for j, b in enumerate(candidates) if i != j and sims[i, j] >= NEAR_DUPLICATE)


def _carry(previous: Optional[Proposal]) -> List[Candidate]:
    """The reviewed candidates that go on into the next generation (empty ones dropped)."""
    if previous is None:
        return []
    carried = []
    for c in previous.candidates:
        if c.examples:
            c.origin, c.near_duplicates = "reviewed", []
            carried.append(c)
    return carried


def assign_to_reviewed(carried: List[Candidate], requests: List[Any], vectors: np.ndarray, encoder) -> List[int]:
    """Add each new request close enough to a reviewed candidate to it; the rows of `requests` left over.

    `vectors` are the requests' embeddings (one row each, as `propose` encodes them).
    """
    if not carried or not requests:
        return list(range(len(requests)))
    centres, floors = [], []
    for c in carried:
        vec = _encode(encoder, [describe.without_placeholders(e.text) for e in c.examples])
        centre = _unit(vec.mean(axis=0, keepdims=True))[0]
        sims = vec @ centre
        centres.append(centre)
        floors.append(max(0.5, float(np.percentile(sims, 10))) if len(sims) > 3 else 0.7)
    sims = vectors @ np.stack(centres).T
    left = []
    for row_number, (request, row) in enumerate(zip(requests, sims)):
        best = int(np.argmax(row))
        if row[best] >= floors[best]:
            carried[best].examples.append(_example(request))
        else:
            left.append(row_number)
    return left


def propose(requests: List[Any], project: OnboardingProject, encoder_path: str, language: str,
            summary: Dict[str, Any], k: Optional[int] = None, seed: int = 0) -> Proposal:
    """The next generation's proposal for `requests`, starting from the project's reviewed state."""
    previous = project.reviewed() if project.exists() else None
    seen = {e.id for c in (previous.candidates if previous else []) for e in c.examples}
    fresh = [r for r in requests if r.id not in seen]
    summary["requests already reviewed"] = len(requests) - len(fresh)
    encoder = load_encoder(encoder_path)
    carried = _carry(previous)
    before = {c.id: c.size for c in carried}
    # Placeholders of redacted personal data ("call me on [PHONE]") say nothing of the request.
    vectors = _encode(encoder, [describe.without_placeholders(r.text) for r in fresh])
    rows_left = assign_to_reviewed(carried, fresh, vectors, encoder)
    left = [fresh[i] for i in rows_left]
    summary["new requests joining reviewed candidates"] = len(fresh) - len(left)
    summary["new requests clustered"] = len(left)
    estimate: Dict[str, Any] = {}
    new: List[Candidate] = []
    if len(left) >= 2:
        frozen = vectors[rows_left]
        found = clustering.cluster_requests(frozen, k=k, seed=seed)
        estimate = {"k": found.k, "low": found.low, "high": found.high, "method": found.method,
                    "seconds": round(found.seconds, 1), "requests": len(left)}
        groups, frz = [], []
        for label in sorted(set(found.labels.tolist()), key=lambda l: -int((found.labels == l).sum())):
            rows = np.flatnonzero(found.labels == label)
            groups.append([left[i] for i in rows])
            frz.append(frozen[rows])
        taken = {c.name for c in carried}
        first = int(previous.next_id()[1:]) if previous else 1
        new, centres = describe_candidates(groups, frz, encoder, language, taken, first)
        flag_near_duplicates(new, centres)
    for c in carried:
        if c.size > before[c.id]:
            c.kind_evidence = [e for e in c.kind_evidence if not e.startswith("new examples")]
            c.kind_evidence.append(f"new examples this run: {c.size - before[c.id]}")
    generation = previous.generation + 1 if previous else 1
    return Proposal(generation=generation, candidates=carried + new, estimate=estimate, summary=summary)


def print_proposal(proposal: Proposal, problems: Sequence[Any], out=sys.stdout, limit: int = 40) -> None:
    est = proposal.estimate
    if est:
        print(f"\nIntents estimated: {est['k']} (range {est['low']}-{est['high']}) "
              f"from {est['requests']} new requests in {est['seconds']} s", file=out)
    print(f"\n| id | name | status | kind | requests | cohesion | flags | telling words |", file=out)
    print("|---|---|---|---|---|---|---|---|", file=out)
    for c in sorted(proposal.candidates, key=lambda c: -c.size)[:limit]:
        flags = [f"near {', '.join(c.near_duplicates)}"] if c.near_duplicates else []
        outliers = sum(e.outlier for e in c.examples)
        if outliers:
            flags.append(f"{outliers} outliers")
        print(f"| {c.id} | {c.name} | {c.status} | {c.kind} | {c.size} | {c.cohesion:.2f} | {'; '.join(flags)} "
              f"| {' '.join(c.words[:4])} |", file=out)
    if len(proposal.candidates) > limit:
        print(f"... and {len(proposal.candidates) - limit} more (python -m training.onboard review PROJECT list)",
              file=out)
    print("\nSummary: " + ", ".join(f"{k} {v}" for k, v in proposal.summary.items() if k != "problems"), file=out)
    for p in list(problems)[:20]:
        print(f"  skipped {p}", file=out)
    if len(problems) > 20:
        print(f"  ... {len(problems) - 20} more skipped (all of them: PROJECT/onboarding/proposal.json summary)",
              file=out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.onboard", description=__doc__.splitlines()[0])
    parser.add_argument("--transcripts", required=True, type=Path, help="folder (or one file) of exported conversations")
    parser.add_argument("--out", required=True, type=Path, help="the onboarding project folder (made when missing)")
    parser.add_argument("--language", default=None, help="the customers' language (default: config.yml's)")
    parser.add_argument("--encoder", default="bundled", help="sentence encoder: 'bundled' or a local folder")
    parser.add_argument("--intents", type=int, default=None, help="number of new intents (default: estimated)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from training.onboard.requests import find_requests
    from training.onboard.transcripts import TranscriptFolderError, read_transcripts

    language = args.language or configured_language()
    try:
        read = read_transcripts(args.transcripts, language=language)
    except TranscriptFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    requests = find_requests(read.conversations, language=language, encoder=load_encoder(args.encoder))
    summary: Dict[str, Any] = dict(read.summary())
    summary["requests"] = len(requests)
    summary["problems"] = [str(p) for p in read.problems]
    if not requests:
        print_proposal(Proposal(0, [], summary=summary), read.problems)
        print("error: no customer requests found in the transcripts; nothing proposed", file=sys.stderr)
        return 2
    project = OnboardingProject(args.out)
    try:
        proposal = propose(requests, project, args.encoder, language, summary, k=args.intents, seed=args.seed)
    except ReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    project.write_proposal(proposal)
    print_proposal(proposal, read.problems)
    print(f"\nProposal (generation {proposal.generation}) written to {project.proposal_path}; review it in the inbox "
          f"(/webhooks/inbox/onboarding) or with: python -m training.onboard review {args.out} list")
    return 0
