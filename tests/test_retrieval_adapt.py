"""`training.adapt_encoder`: a contrastively adapted encoder that loads like the bundled one."""
from __future__ import annotations

import csv
import json
import random

import pytest

from core.encoder import load_encoder
from retrieval import AnswerIndex
from training import adapt_encoder

GROUPS = {
    "joint": ["Can I open a joint account?", "How do I add my wife to my account?", "Can two people share an account?",
              "Is a joint account possible with my partner?", "Can my husband join my account?", "Can we have a shared account?"],
    "abroad": ["What is my card limit abroad?", "How much cash can I take out on holiday?", "Does my card work in the USA?",
               "Can I raise my limit while travelling?", "Is there a cash limit overseas?", "Will my card work in Spain?"],
    "close": ["How do I close my account?", "I want to shut my account", "Can I cancel my current account?",
              "How can I end my account with you?", "Close my account please", "What do I do to close my bank account?"],
    "dispute": ["How do I dispute a charge?", "I was charged for something I never got", "Can I get a chargeback?",
                "A shop charged me twice", "How do I challenge a card payment?", "I want to contest a transaction"],
}


def test_batches_never_hold_one_answer_twice():
    pairs = adapt_encoder.make_pairs(GROUPS, random.Random(0))
    batches = adapt_encoder.make_batches(pairs, batch_size=4, rng=random.Random(0))

    assert len(pairs) == 24
    assert all(len({answer for _, _, answer in batch}) == len(batch) for batch in batches)
    assert all(anchor != positive for anchor, positive, _ in pairs)


def test_the_adapted_encoder_is_a_standard_folder_the_index_can_use(tmp_path):
    history = tmp_path / "history.csv"
    with history.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "category"])
        writer.writerows((q, answer) for answer, questions in GROUPS.items() for q in questions)
    out = tmp_path / "encoder"

    code = adapt_encoder.main(["--history", str(history), "--out", str(out), "--batch-size", "4",
                               "--eval-every", "2", "--holdout", "0.2", "--threads", "1"])

    assert code == 0, "adaptation made held-out retrieval worse on an easy history"
    report = json.loads((out / "adaptation.json").read_text())
    assert report["base"] == "bundled" and report["held_out"] == 8
    encoder = load_encoder(str(out))
    assert encoder.max_seq_length == load_encoder().max_seq_length
    index = AnswerIndex.build([{"question": q, "answer": a} for a, qs in GROUPS.items() for q in qs], encoder=str(out))
    index.save(tmp_path / "index")
    loaded = AnswerIndex.load(tmp_path / "index")
    assert loaded.encoder_spec == str(out.resolve())
    assert loaded.search("can my partner and I open an account together", k=1)[0].answer == "joint"


def test_a_history_where_no_two_questions_share_an_answer_is_refused(tmp_path):
    history = tmp_path / "qa.jsonl"
    history.write_text("\n".join(json.dumps({"question": f"question {i}?", "answer": f"answer {i}"}) for i in range(10)))

    with pytest.raises(SystemExit, match="share an answer"):
        adapt_encoder.main(["--history", str(history), "--out", str(tmp_path / "encoder")])
