"""The retraining gate: every part scored candidate against live on fixed held-out data; releases and audit rows.

Tiny real models throughout (an intent model trained for a few epochs, an
answer index of six answers, a recommender without its neural parts); the
Rasa model is a made-up archive passed with ``--rasa-candidate``.
"""
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from bot.security.audit import recent
from core import db, releases
from nlu.model import IntentModel, IntentModelConfig
from recommender import Recommender
from retrieval import AnswerIndex
from tests.test_model_check import archive, model_files
from training import gates, retrain
from training.intent_data import read_examples

FIXTURE = Path(__file__).parent / "fixtures" / "intents_tiny.csv"
TINY = dict(trainable_layers=1, max_length=24, batch_size=8, validation_split=0.2, patience=5, device="cpu")
HELDOUT = """text,label
my bank card has gone missing,lost_card
I think my card was stolen on the train,lost_card
when does my new card arrive,card_arrival
has the card been posted yet,card_arrival
what is the dollar rate today,exchange_rate
how many euros for a pound,exchange_rate
hello there,greet
hi good morning,greet
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A properly trained live model and a deliberately worse one (shuffled labels, one epoch)."""
    root = tmp_path_factory.mktemp("gate")
    texts, labels, _ = read_examples(FIXTURE)
    good = IntentModel.fit(texts, labels, IntentModelConfig(epochs=3, **TINY), progress=False).save(root / "good")
    shuffled = labels[:]
    random.Random(0).shuffle(shuffled)
    worse = IntentModel.fit(texts, shuffled, IntentModelConfig(epochs=1, **TINY), progress=False).save(root / "worse")
    heldout = root / "heldout.csv"
    heldout.write_text(HELDOUT)
    corrupt = root / "corrupt"
    corrupt.mkdir()
    (corrupt / "intent_model.json").write_text("{not json")
    return {"good": good, "worse": worse, "heldout": heldout, "corrupt": corrupt}


def run(tmp_path, candidate, heldout, *extra):
    return retrain.main(["--model-dir", str(tmp_path / "models"), "--intent-candidate", str(candidate),
                         "--heldout", str(heldout), "--skip-index", "--skip-recommender", "--no-review-export",
                         "--database-url", f"sqlite:///{tmp_path}/a.db", "--report-dir", str(tmp_path / "reports"),
                         "--actor", "alice", *extra])


def audit_rows(tmp_path, action):
    return recent(db.connect(f"sqlite:///{tmp_path}/a.db"), action=action)


# ----------------------------------------------------------------- intent

def test_a_deliberately_worse_intent_model_is_refused_and_the_live_one_stays(models, tmp_path, capsys):
    assert run(tmp_path, models["good"], models["heldout"], "--no-rasa-model") == 0  # first model: nothing to compare
    live = tmp_path / "models" / "intent"
    before = {p.name: p.read_bytes() for p in live.rglob("*") if p.is_file()}
    first = releases.read(tmp_path / "models")
    assert run(tmp_path, models["worse"], models["heldout"], "--no-rasa-model") == 1
    printed = capsys.readouterr().out
    assert "REFUSED" in printed and "intent: FAIL" in printed and "accuracy" in printed
    assert {p.name: p.read_bytes() for p in live.rglob("*") if p.is_file()} == before
    assert releases.read(tmp_path / "models") == first  # no new release
    [refusal] = audit_rows(tmp_path, "model.refuse")
    assert refusal["actor"] == "retrain:alice" and refusal["detail"]["gate"]["intent"]["passed"] is False
    assert refusal["detail"]["previous"] == first.version


def test_an_equal_intent_model_passes(models, tmp_path, capsys):
    assert run(tmp_path, models["good"], models["heldout"], "--no-rasa-model") == 0
    assert run(tmp_path, models["good"], models["heldout"], "--no-rasa-model") == 0
    assert "intent: PASS" in capsys.readouterr().out


def test_the_gate_compares_scores_on_the_held_out_set(models):
    good = gates.evaluate_intent(models["good"], models["heldout"])
    worse = gates.evaluate_intent(models["worse"], models["heldout"])
    assert good["accuracy"] > worse["accuracy"]
    assert gates.not_worse("intent", worse, good)[0] is False
    assert gates.not_worse("intent", good, worse) == (True, [])
    assert gates.not_worse("intent", good, good) == (True, [])  # equal is not worse
    assert gates.not_worse("intent", worse, good, tolerance=1.0) == (True, [])


def test_a_corrupt_intent_candidate_is_never_promoted(models, tmp_path, capsys):
    assert run(tmp_path, models["corrupt"], models["heldout"], "--no-rasa-model", "--promote-passing") == 1
    printed = capsys.readouterr().out
    assert "does not load or score" in printed and "REFUSED" in printed
    assert not (tmp_path / "models" / "intent").exists()
    assert releases.read(tmp_path / "models") is None


# ----------------------------------------------------------------- Rasa model, release and rollback

def test_a_corrupt_rasa_archive_fails_the_intent_part(models, tmp_path, capsys):
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(archive(tmp_path / "ok.tar.gz", model_files()).read_bytes()[:300])
    assert run(tmp_path, models["good"], models["heldout"], "--rasa-candidate", str(broken)) == 1
    assert "the Rasa model around it failed" in capsys.readouterr().out
    assert releases.read(tmp_path / "models") is None and not (tmp_path / "models" / "intent").exists()


def test_promotion_publishes_a_release_and_rollback_publishes_the_previous_one(models, tmp_path, capsys):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    served_first = archive(model_dir / "first.tar.gz", model_files())  # what bot.serve serves before any release
    candidate = archive(tmp_path / "candidate.tar.gz", model_files())
    assert run(tmp_path, models["worse"], models["heldout"], "--rasa-candidate", str(candidate)) == 0
    one = releases.read(model_dir)
    assert one.action == "promote" and one.parts == {"intent": str(model_dir / "intent")}
    assert one.rasa_model == str(model_dir / f"{one.version}.tar.gz") and Path(one.rasa_model).is_file()
    assert one.gate["intent"]["passed"] and one.gate["intent"]["candidate"]["accuracy"] >= 0
    assert run(tmp_path, models["good"], models["heldout"], "--rasa-candidate", str(candidate)) == 0  # better
    two = releases.read(model_dir)
    assert two.previous == one.version and two.rasa_model.endswith(f"{two.version}.tar.gz")
    report = json.loads((tmp_path / "reports" / f"{two.version}.json").read_text())
    assert report["decision"] == "promote" and report["previous_version"] == one.version
    assert (tmp_path / "reports" / f"{two.version}.md").read_text().startswith(f"# Retrain {two.version}")
    head = "head.safetensors"
    assert (model_dir / "intent" / head).read_bytes() == (models["good"] / head).read_bytes()

    rollback = ["--model-dir", str(model_dir), "--rollback", "--database-url", f"sqlite:///{tmp_path}/a.db", "--actor", "bob"]
    assert retrain.main(rollback) == 0
    back = releases.read(model_dir)
    assert back.action == "rollback" and back.previous == two.version and back.rasa_model == one.rasa_model
    assert (model_dir / "intent" / head).read_bytes() == (models["worse"] / head).read_bytes()
    assert retrain.main(rollback) == 0  # a second rollback goes forward again
    forward = releases.read(model_dir)
    assert forward.rasa_model == two.rasa_model and forward.previous == back.version
    assert (model_dir / "intent" / head).read_bytes() == (models["good"] / head).read_bytes()
    assert Path(str(served_first)).is_file()

    [retrained, _] = audit_rows(tmp_path, "model.retrain")  # newest first
    assert retrained["target"] == two.version and "intent" in retrained["detail"]["gate"]
    promoted = audit_rows(tmp_path, "model.promote")
    assert [row["target"] for row in promoted] == [two.version, one.version]
    assert promoted[1]["detail"]["previous"] is None and promoted[0]["detail"]["previous"] == one.version
    rolled = audit_rows(tmp_path, "model.rollback")
    assert rolled[1]["actor"] == "retrain:bob" and rolled[1]["detail"]["from"] == two.version
    assert rolled[1]["detail"]["restored"] == one.version and rolled[1]["target"] == back.version


def test_the_first_rollback_restores_the_archive_served_before_any_release(models, tmp_path):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    served_first = archive(model_dir / "first.tar.gz", model_files())
    assert run(tmp_path, models["good"], models["heldout"], "--rasa-candidate",
               str(archive(tmp_path / "c.tar.gz", model_files()))) == 0
    assert retrain.main(["--model-dir", str(model_dir), "--rollback", "--database-url", f"sqlite:///{tmp_path}/a.db"]) == 0
    assert releases.read(model_dir).rasa_model == str(served_first)


def test_rollback_with_nothing_to_roll_back_says_so(tmp_path, capsys):
    assert retrain.main(["--model-dir", str(tmp_path / "models"), "--rollback",
                         "--database-url", f"sqlite:///{tmp_path}/a.db"]) == 1
    assert "nothing to roll back" in capsys.readouterr().out


# ----------------------------------------------------------------- answer index

HISTORY = [
    {"id": "close", "question": "How do I close my current account?", "answer": "Close it in the app under Account settings."},
    {"id": "joint", "question": "Can I open a joint account with my partner?", "answer": "Yes, two people can hold one."},
    {"id": "abroad", "question": "What is my card's cash withdrawal limit abroad?", "answer": "£500 a day, up to £1,000."},
    {"id": "dispute", "question": "How do I dispute a charge on my card?", "answer": "Report a problem on the payment."},
    {"id": "isa", "question": "How much can I pay into a cash ISA each year?", "answer": "£20,000 per tax year."},
]
QUESTIONS = [("I want to shut my account", "close"), ("can my girlfriend and I share an account", "joint"),
             ("how much cash can I take out overseas", "abroad"), ("how can I challenge a card payment", "dispute"),
             ("what's the ISA allowance", "isa")]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    heldout = root / "heldout.jsonl"
    heldout.write_text("".join(json.dumps({"question": q, "answer_id": a}) + "\n" for q, a in QUESTIONS))
    live = AnswerIndex.build(HISTORY).save(root / "live")
    equal = AnswerIndex.build(HISTORY).save(root / "equal")
    # Worse: two answers lost (as a bad export would), so their questions find the wrong ones.
    worse = AnswerIndex.build(HISTORY[2:]).save(root / "worse")
    corrupt = AnswerIndex.build(HISTORY).save(root / "corrupt")
    (corrupt / "index.faiss").write_bytes(b"garbage")
    return {"live": live, "equal": equal, "worse": worse, "corrupt": corrupt, "heldout": heldout}


def test_the_index_gate_refuses_a_worse_index_and_passes_an_equal_one(indexes):
    equal = gates.gate_index(indexes["equal"], indexes["live"], indexes["heldout"])
    assert equal.passed and equal.live["precision@1"] == equal.candidate["precision@1"] == 1.0
    worse = gates.gate_index(indexes["worse"], indexes["live"], indexes["heldout"])
    assert not worse.passed and worse.candidate["precision@1"] == pytest.approx(0.6)
    assert "precision@1 0.600 < live 1.000" in worse.reasons[0]
    assert "questions whose top answer changed: 2 of 5" in worse.changes
    assert gates.gate_index(indexes["worse"], indexes["live"], indexes["heldout"], tolerance=0.5).passed


def test_a_corrupt_index_candidate_fails_its_gate(indexes):
    gate = gates.gate_index(indexes["corrupt"], indexes["live"], indexes["heldout"])
    assert not gate.passed and "does not load or score" in gate.reasons[0] and gate.candidate is None


def test_a_held_out_answers_file_without_answer_ids_is_named(tmp_path):
    bad = tmp_path / "answers.jsonl"
    bad.write_text('{"question": "hello"}\n')
    with pytest.raises(Exception, match="answers.jsonl"):
        gates.read_heldout_answers(bad)


# ----------------------------------------------------------------- recommender

ITEMS = pd.DataFrame([
    {"item_id": "travel-credit-card", "title": "Travel Credit Card", "tags": ["travel"]},
    {"item_id": "currency-pockets", "title": "Currency Pockets", "tags": ["travel"]},
    {"item_id": "easy-saver", "title": "Easy Saver", "tags": ["savings"]},
    {"item_id": "cash-isa", "title": "Cash ISA", "tags": ["savings"]},
])
DAY = 86400.0


def journeys() -> pd.DataFrame:
    """Travellers go card -> currency pockets, savers easy saver -> ISA; the last 20 take step two in the tail."""
    rows = []
    for n in range(60):
        first, second = ("travel-credit-card", "currency-pockets") if n % 3 == 0 else ("easy-saver", "cash-isa")
        late = n >= 40
        rows.append({"customer_id": f"c{n}", "item_id": first, "timestamp": 0.0 + n, "kind": "view"})
        rows.append({"customer_id": f"c{n}", "item_id": second, "timestamp": (20 if late else 2) * DAY + n, "kind": "view"})
    return pd.DataFrame(rows)


LEAN = dict(sequence_weight=0.0, content_weight=0.0, context_weight=0.0, diversity=1.0)


@pytest.fixture(scope="module")
def recommenders(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    data = journeys()
    live = Recommender.fit(data, ITEMS, collaborative_weight=1.0, popularity_weight=0.0, **LEAN).save(root / "live")
    equal = Recommender.fit(data, ITEMS, collaborative_weight=1.0, popularity_weight=0.0, **LEAN).save(root / "equal")
    worse = Recommender.fit(data, ITEMS, collaborative_weight=0.0, popularity_weight=1.0, **LEAN).save(root / "worse")
    corrupt = Recommender.fit(data, ITEMS, **LEAN).save(root / "corrupt")
    (corrupt / "recommender.json").write_text("{")
    return {"live": live, "equal": equal, "worse": worse, "corrupt": corrupt,
            "split": gates.time_split(data, ITEMS, holdout=0.16)}


def test_the_time_split_holds_out_the_newest_days(recommenders):
    split = recommenders["split"]
    assert len(split.relevant) == 20 and split.train["timestamp"].max() <= split.cutoff
    assert split.relevant["c43"] == {"cash-isa"} and split.relevant["c43"].isdisjoint(
        set(split.train[split.train["customer_id"] == "c43"]["item_id"]))


def test_the_recommender_gate_refuses_a_worse_recipe_and_passes_an_equal_one(recommenders):
    split = recommenders["split"]
    equal = gates.gate_recommender(recommenders["equal"], recommenders["live"], split)
    assert equal.passed and equal.candidate["ndcg@10"] == equal.live["ndcg@10"] == 1.0
    worse = gates.gate_recommender(recommenders["worse"], recommenders["live"], split)
    assert not worse.passed and worse.candidate["ndcg@10"] < 1.0 and "ndcg@10" in worse.reasons[0]


def test_a_corrupt_recommender_candidate_fails_its_gate(recommenders):
    gate = gates.gate_recommender(recommenders["corrupt"], recommenders["live"], recommenders["split"])
    assert not gate.passed and "does not load or score" in gate.reasons[0]


def test_ndcg_counts_every_relevant_item_at_its_rank():
    assert gates.ndcg_at_k(["a", "b"], {"a"}) == 1.0
    assert gates.ndcg_at_k(["x", "a"], {"a"}) == pytest.approx(1 / 1.5849625)
    assert gates.ndcg_at_k(["x"], {"a"}) == 0.0


# ----------------------------------------------------------------- all or none

@pytest.fixture
def live_dirs(tmp_path, monkeypatch):
    """The live index and recommender folders in tmp_path (settings from the environment)."""
    from core.settings import get_settings

    monkeypatch.setenv("ASSISTANT_INDEX_DIR", str(tmp_path / "live-index"))
    monkeypatch.setenv("ASSISTANT_RECOMMENDER_DIR", str(tmp_path / "live-recommender"))
    get_settings.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    get_settings.cache_clear()


def test_one_failing_part_stops_all_unless_promote_passing(models, live_dirs, capsys):
    tmp_path = live_dirs
    interactions = tmp_path / "interactions.jsonl"
    journeys().to_json(interactions, orient="records", lines=True)
    assert run(tmp_path, models["good"], models["heldout"], "--no-rasa-model") == 0  # a live intent model
    # A worse intent model (fails) and a first recommender (nothing live to compare with: passes).
    argv = ["--model-dir", str(tmp_path / "models"), "--intent-candidate", str(models["worse"]),
            "--heldout", str(models["heldout"]), "--skip-index", "--no-review-export", "--no-rasa-model",
            "--interactions", str(interactions), "--recommender-holdout", "0.16",
            "--database-url", f"sqlite:///{tmp_path}/a.db", "--report-dir", str(tmp_path / "reports")]
    first = releases.read(tmp_path / "models")
    assert retrain.main(argv) == 1
    assert "recommender: PASS" in capsys.readouterr().out and not (tmp_path / "live-recommender").exists()
    assert releases.read(tmp_path / "models") == first
    assert retrain.main([*argv, "--promote-passing"]) == 0
    release = releases.read(tmp_path / "models")
    assert release.parts == {"recommender": str(tmp_path / "live-recommender")} and release.rasa_model is None
    assert Recommender.load(tmp_path / "live-recommender").recommend("c43", k=3)
    assert (tmp_path / "models" / "intent" / "head.safetensors").read_bytes() == \
        (models["good"] / "head.safetensors").read_bytes()


def test_an_empty_review_export_is_not_training_data(tmp_path, monkeypatch):
    empty = tmp_path / "reviewed_nlu.yml"
    empty.write_text('version: "3.1"\nnlu: []\n')
    monkeypatch.setattr(retrain, "DEFAULT_NLU_EXPORT", empty)
    assert retrain._reviewed_nlu() == []
    empty.write_text('version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hello\n')
    assert retrain._reviewed_nlu() == [empty]


# ----------------------------------------------------------------- the Rasa model and the live intent model

def test_the_rasa_model_is_trained_around_the_candidate_without_rasas_cache(tmp_path, monkeypatch):
    calls = []

    def rasa_train(command, cwd, env):
        calls.append((command, env))
        out = Path(command[command.index("--out") + 1]) / (command[command.index("--fixed-model-name") + 1] + ".tar.gz")
        archive(out, model_files())
        return retrain.subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(retrain.subprocess, "run", rasa_train)
    config = tmp_path / "config.yml"
    config.write_text("pipeline:\n- name: nlu.TransformerIntentClassifier\n  epochs: 8\npolicies: []\n")
    packed = retrain.pack_rasa_model(tmp_path / "adapter", tmp_path / "candidate", "v1", [tmp_path / "data"], config)
    assert packed == tmp_path / "candidate" / "v1.tar.gz"
    [(command, env)] = calls
    assert env["RASA_MAX_CACHE_SIZE"] == "0" and str(retrain.PROJECT_ROOT) in env["PYTHONPATH"].split(":")
    written = (tmp_path / "candidate" / "config.yml").read_text()
    assert f"pretrained_adapter: {tmp_path / 'adapter'}" in written

    monkeypatch.setattr(retrain.subprocess, "run", lambda command, cwd, env: retrain.subprocess.CompletedProcess(command, 1))
    with pytest.raises(retrain.RetrainError, match="rasa train failed"):
        retrain.pack_rasa_model(tmp_path / "adapter", tmp_path / "other", "v2", [tmp_path / "data"], config)


def test_the_live_intent_model_is_read_from_the_rasa_model_served_when_models_intent_is_missing(tmp_path):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    archive(model_dir / "served.tar.gz", model_files())
    layout = retrain.Layout(model_dir, {"intent": model_dir / "intent"}, model_dir / "candidate", model_dir / "previous")
    folder = retrain.live_intent(layout, tmp_path / "scratch")
    assert folder.name == "train_nlu.TransformerIntentClassifier0"
    assert (folder / "intent_model.json").read_bytes() == model_files()[
        "components/train_nlu.TransformerIntentClassifier0/intent_model.json"]


def test_an_unreachable_audit_database_stops_the_run_before_anything_is_built(models, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    assert retrain.main(["--model-dir", str(tmp_path / "models"), "--database-url", f"sqlite:///{tmp_path}/a-file/a.db",
                         "--intent-candidate", str(models["good"]), "--heldout", str(models["heldout"]),
                         "--skip-index", "--skip-recommender", "--no-review-export", "--no-rasa-model"]) == 2
    assert "cannot open the database for the audit log" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()
