"""Adapt the sentence encoder to the company's own history.

Contrastive fine-tuning: two questions that received the same answer should
embed close together, questions with different answers apart. Each training
pair is (question, another question with the same answer); the other pairs of
the batch are the negatives (MultipleNegativesRankingLoss). Batches hold each
answer at most once, so an in-batch "negative" is never really a positive,
and are bucketed by length so little time goes into padding.

A stratified part of the history is held out; the encoder is scored on it
(leave-one-out nearest neighbour: does the closest other held-out question
share the answer?) before training, every ``--eval-every`` steps and at the
end, and the best state is written. The output is a standard
sentence-transformers folder, loaded like the bundled model::

    python -m training.adapt_encoder --history ../shared/data/banking77/train.csv \\
        --out artifacts/encoder
    ASSISTANT_ENCODER=artifacts/encoder python -m training.build_index ...

Input: CSV with ``text,category`` or ``question,answer`` columns, or JSONL
with ``question`` and ``answer`` keys.
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from core.records import RecordError, csv_columns, read_csv, read_jsonl


def read_groups(path: Path) -> Dict[str, List[str]]:
    """Questions grouped by the answer they received, from a CSV or JSONL file."""
    if not path.exists():
        raise SystemExit(f"history file {path} does not exist")
    groups: Dict[str, List[str]] = defaultdict(list)
    if path.suffix.lower() == ".jsonl":
        question_key, answer_key = "question", "answer"
        rows = read_jsonl(path, required=(question_key, answer_key), errors="yield")
    else:
        fields = set(csv_columns(path))
        if {"text", "category"} <= fields:
            question_key, answer_key = "text", "category"
        elif {"question", "answer"} <= fields:
            question_key, answer_key = "question", "answer"
        else:
            raise SystemExit(f"{path} needs columns text,category or question,answer; found {sorted(fields)}")
        rows = read_csv(path, required=(question_key, answer_key), errors="yield")
    for _, row in rows:
        if isinstance(row, RecordError):
            print(f"{row}: skipped", file=sys.stderr)
            continue
        question, answer = str(row[question_key] or "").strip(), str(row[answer_key] or "").strip()
        if question and answer:
            groups[answer].append(question)
    return {answer: sorted(set(qs)) for answer, qs in groups.items()}


def split_holdout(
    groups: Dict[str, List[str]], fraction: float, rng: random.Random
) -> Tuple[Dict[str, List[str]], List[Tuple[str, str]]]:
    """Stratified split: hold out `fraction` of each answer's questions, at least two
    (leave-one-out scoring needs a second question with the same answer) and only
    from answers with six questions or more, so that each keeps four to train on."""
    train: Dict[str, List[str]] = {}
    held: List[Tuple[str, str]] = []
    for answer, questions in groups.items():
        questions = questions[:]
        rng.shuffle(questions)
        n_held = max(2, int(round(len(questions) * fraction))) if len(questions) >= 6 and fraction > 0 else 0
        held += [(q, answer) for q in questions[:n_held]]
        train[answer] = questions[n_held:]
    return train, held


def make_pairs(groups: Dict[str, List[str]], rng: random.Random) -> List[Tuple[str, str, str]]:
    """One (anchor, positive, answer) pair per question whose answer was given to another question too."""
    pairs = []
    for answer, questions in groups.items():
        if len(questions) < 2:
            continue
        for i, anchor in enumerate(questions):
            j = rng.randrange(len(questions) - 1)
            positive = questions[j + 1] if j >= i else questions[j]
            pairs.append((anchor, positive, answer))
    return pairs


def make_batches(pairs: List[Tuple[str, str, str]], batch_size: int, rng: random.Random) -> List[list]:
    """Length-bucketed batches in which every answer appears at most once."""
    rng.shuffle(pairs)
    batches: List[list] = []
    bucket_span = batch_size * 32
    for start in range(0, len(pairs), bucket_span):
        bucket = sorted(pairs[start:start + bucket_span], key=lambda p: len(p[0]) + len(p[1]))
        open_batches: List[Tuple[list, set]] = []
        for pair in bucket:
            for batch, answers in open_batches:
                if pair[2] not in answers:
                    batch.append(pair)
                    answers.add(pair[2])
                    if len(batch) == batch_size:
                        batches.append(batch)
                        open_batches.remove((batch, answers))
                    break
            else:
                open_batches.append(([pair], {pair[2]}))
        # Leftovers with too few distinct answers would be weak batches; keep the reasonably full ones.
        batches += [b for b, _ in open_batches if len(b) >= max(2, batch_size // 2)]
    rng.shuffle(batches)
    return batches


def holdout_precision(model, held: Sequence[Tuple[str, str]], batch_size: int = 128) -> float:
    """Leave-one-out precision@1 among the held-out questions (1.0 = every nearest neighbour shares the answer)."""
    if len(held) < 2:
        return float("nan")
    model.eval()
    vectors = model.encode([q for q, _ in held], batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    answers = np.array([a for _, a in held], dtype=object)
    return float(np.mean(answers[sims.argmax(axis=1)] == answers))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", required=True, type=Path, help="CSV (text,category or question,answer) or JSONL (question, answer)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/encoder"), help="folder for the adapted encoder")
    parser.add_argument("--base", default=None, help="encoder to start from: 'bundled' (default: the configured encoder) or a folder")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--scale", type=float, default=20.0, help="MNRL similarity scale (inverse temperature)")
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--holdout", type=float, default=0.1, help="fraction of each answer's questions kept for selection")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between held-out evaluations")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="stop (keeping the best state) after this long")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy shared machine)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from core.encoder import load_encoder, resolve_model_path
    from core.settings import get_settings

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)

    groups = read_groups(args.history)
    train_groups, held = split_holdout(groups, args.holdout, rng)
    pairs = make_pairs(train_groups, rng)
    n_questions = sum(len(qs) for qs in groups.values())
    print(f"{n_questions} questions, {len(groups)} distinct answers; {len(pairs)} training pairs, {len(held)} held out")
    if len(pairs) < args.batch_size:
        raise SystemExit(
            f"only {len(pairs)} questions share an answer with another question; contrastive adaptation "
            f"needs at least one batch ({args.batch_size}). Use more history or the bundled encoder."
        )

    base = args.base or get_settings().encoder
    # A private copy: the cached process-wide encoder must stay as loaded.
    model = copy.deepcopy(load_encoder(base))
    served_max_length = model.max_seq_length
    # Training truncates for speed; the written model keeps the length it will serve with.
    model.max_seq_length = args.max_seq_length
    loss_fn = MultipleNegativesRankingLoss(model, scale=args.scale)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)

    steps_per_epoch = len(make_batches(pairs[:], args.batch_size, random.Random(0)))
    total_steps = max(1, int(steps_per_epoch * args.epochs))
    warmup = max(1, total_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup)))
    )

    best_score = holdout_precision(model, held)
    best_state, best_step = None, 0
    print(f"held-out precision@1 before adaptation: {best_score:.4f}")

    started = time.time()
    step = 0
    stopped_early = False
    progress = tqdm(total=total_steps, desc="adapting encoder", unit="batch")
    while step < total_steps and not stopped_early:
        for batch in make_batches(pairs[:], args.batch_size, rng):
            model.train()
            anchors = model.preprocess([a for a, _, _ in batch])
            positives = model.preprocess([p for _, p, _ in batch])
            loss = loss_fn([anchors, positives], torch.empty(0))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}", best=f"{best_score:.4f}")
            out_of_time = (time.time() - started) > args.max_minutes * 60
            if step % args.eval_every == 0 or step == total_steps or out_of_time:
                score = holdout_precision(model, held)
                tqdm.write(f"step {step}/{total_steps}: held-out precision@1 {score:.4f}")
                if score >= best_score:
                    best_score, best_step = score, step
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if out_of_time:
                tqdm.write(f"stopping after {args.max_minutes} minutes (--max-minutes)")
                stopped_early = True
            if step >= total_steps or stopped_early:
                break
    progress.close()

    if best_state is None:
        print(
            f"adaptation did not beat the starting encoder on held-out questions ({best_score:.4f}); "
            f"nothing written. Keep using '{base}'."
        )
        return 1
    model.load_state_dict(best_state)
    model.max_seq_length = served_max_length
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(str(args.out))
    (args.out / "adaptation.json").write_text(
        json.dumps(
            {
                "base": base if base == "bundled" else resolve_model_path(base),
                "history": str(args.history),
                "pairs": len(pairs),
                "held_out": len(held),
                "held_out_precision_at_1": best_score,
                "best_step": best_step,
                "steps": step,
                "minutes": round((time.time() - started) / 60, 2),
                **{k: v for k, v in vars(args).items() if k in {"epochs", "batch_size", "lr", "scale", "max_seq_length", "seed"}},
            },
            indent=2,
        )
    )
    print(f"held-out precision@1 {best_score:.4f} at step {best_step}; encoder written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
