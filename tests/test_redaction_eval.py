"""Redaction measured on the labelled sample tests/fixtures/redaction_v2.jsonl.

The sample is written by `training/make_redaction_sample.py` (seeded) from
templates split into ``tuning`` and ``holdout`` templates, plus two batches of
hand-written messages (holdout). Figures and how they were reached are in
docs/benchmarks.md ("Redaction"). The floors below are a little under the
holdout figures, so that a change that loses recall or precision, or starts
eating order numbers, fails here. This replaces the floors on the older
270-message sample (tests/fixtures/redaction_labelled.jsonl, removed), which
was labelled for the old policy (references and any 8+ digit run were
personal; names, postcodes and dates of birth were not).
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from core import redaction
from core.redaction import KINDS, redact
from core.settings import PROJECT_ROOT
from training import bench_redaction
from training import make_redaction_sample as make_sample

SAMPLE = PROJECT_ROOT / "tests" / "fixtures" / "redaction_v2.jsonl"

# Recall floors on the holdout part (targets: 0.98 for the numbers, 0.95 for names, addresses, DOBs).
RECALL_FLOORS = {
    "CARD": 0.98, "IBAN": 0.98, "ACCOUNT": 0.98, "SORT_CODE": 0.98, "EMAIL": 0.98, "PHONE": 0.98,
    "NAME": 0.94, "ADDRESS": 0.95, "DOB": 0.95, "PASSPORT": 0.93, "NATIONAL_ID": 0.97, "PIN": 0.97,
}


@pytest.fixture(scope="module")
def rows():
    return bench_redaction.load(SAMPLE)


@pytest.fixture(scope="module")
def holdout(rows):
    chosen = [r for r in rows if r["split"] == "holdout"]
    return bench_redaction.score(chosen, bench_redaction.run(redaction, chosen, repeats=3))


def test_the_sample_is_what_the_issue_asks_for(rows):
    assert len(rows) >= 1000
    assert {r["split"] for r in rows} == {"tuning", "holdout"}
    per_kind = Counter(kind for r in rows for _, _, kind in r["spans"])
    assert set(per_kind) == set(KINDS)
    assert min(per_kind.values()) >= 80, per_kind
    assert sum(1 for r in rows if not r["spans"]) >= 300, "messages without personal data but with tricky numbers"
    assert sum(1 for r in rows if r["lang"] == "zh") >= 100
    for row in rows:
        for start, end, kind in row["spans"]:
            assert 0 <= start < end <= len(row["text"]) and row["text"][start:end].strip() == row["text"][start:end], row


@pytest.mark.skipif(not make_sample.BANKING77.exists(), reason="the BANKING77 questions the sample embeds are not on this machine")
def test_the_sample_is_reproducible(tmp_path):
    out = tmp_path / "sample.jsonl"
    subprocess.run([sys.executable, "-m", "training.make_redaction_sample", "--out", str(out)],
                   cwd=PROJECT_ROOT, check=True, capture_output=True)
    assert out.read_text(encoding="utf-8") == SAMPLE.read_text(encoding="utf-8")


def test_recall_on_the_holdout_clears_the_floors(holdout):
    for kind, floor in RECALL_FLOORS.items():
        k = holdout["per_kind"][kind]
        assert k["hit"] / k["labelled"] >= floor, (kind, k)


def test_precision_by_masked_character_and_clean_messages(holdout):
    total = holdout["total"]
    assert total["masked_ok"] / total["masked"] >= 0.97
    assert holdout["clean_changed"] / holdout["clean"] <= 0.01


def test_redaction_is_fast_enough(holdout):
    # Target 2 ms p99 on one core (docs/benchmarks.md measures ~0.5 ms); loose here, the machine is shared.
    assert holdout["p99_ms"] <= 5.0


def test_no_card_or_iban_survives_anywhere_in_the_sample(rows):
    for row in rows:
        redacted = redact(row["text"])
        for start, end, kind in row["spans"]:
            if kind in ("CARD", "IBAN"):
                assert row["text"][start:end] not in redacted, row["text"]


def test_the_benchmark_prints_both_redactors_side_by_side():
    out = subprocess.run(
        [sys.executable, "-m", "training.bench_redaction", "--sample", str(SAMPLE), "--repeats", "1"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    ).stdout
    assert "| kind | labelled | new found | new recall | new precision | current found | current recall | current precision |" in out
    for part in ("### tuning", "### holdout", "### all", "### Chinese"):
        assert part in out
    assert "| NAME |" in out and "clean messages changed" in out
