"""Out-of-scope detection (`nlu.open_intent`) and the open-intent benchmark's protocol, on synthetic data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nlu.open_intent import OpenIntentDetector, calibrated_threshold
from training.bench_open_intent import (
    UNKNOWN,
    draw_known,
    open_metrics,
    open_split,
    summarise,
    table,
    thresholded,
)

DIM, CLASSES = 32, 5


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _cluster(centre: np.ndarray, n: int, rng: np.random.RandomState, spread: float = 0.25) -> np.ndarray:
    return _unit(centre + spread * rng.randn(n, DIM) / np.sqrt(DIM))


def _proba(emb: np.ndarray, centres: np.ndarray, scale: float = 10.0) -> np.ndarray:
    """A cosine classifier's probabilities, like IntentModel's head."""
    logits = scale * emb @ centres.T
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def world():
    """Five known intents, two of them near-synonyms (their own examples get modest softmax confidence,
    which pulls a softmax threshold down); unknown requests far from every known example but leaning
    towards one of the other intents, so that a softmax is sure about them."""
    rng = np.random.RandomState(0)
    centres = _unit(rng.randn(CLASSES, DIM))
    centres[1] = _unit(centres[0] + 0.5 * _unit(rng.randn(DIM)))
    y = np.repeat(np.arange(CLASSES), 60)
    train = np.concatenate([_cluster(centres[c], 60, rng) for c in range(CLASSES)])
    val_y = np.repeat(np.arange(CLASSES), 20)
    val = np.concatenate([_cluster(centres[c], 20, rng) for c in range(CLASSES)])
    test_y = np.repeat(np.arange(CLASSES), 20)
    test_known = np.concatenate([_cluster(centres[c], 20, rng) for c in range(CLASSES)])
    leaning = _unit(0.8 * centres[rng.randint(2, CLASSES, size=100)] + _unit(rng.randn(100, DIM)))
    return {
        "centres": centres, "train": train, "y": y, "val": val, "val_y": val_y,
        "val_proba": _proba(val, centres), "test_known": test_known, "test_y": test_y, "unknown": leaning,
    }


@pytest.fixture(scope="module")
def detector(world):
    return OpenIntentDetector.fit(world["train"], world["y"], world["val"], world["val_y"], world["val_proba"], centroids_per_class=3)


def test_far_points_are_unknown_and_near_ones_known(world, detector):
    near = world["test_known"]
    far = _unit(np.random.RandomState(1).randn(50, DIM))
    assert detector.unknown(near, _proba(near, world["centres"])).mean() < 0.25
    assert detector.unknown(far, _proba(far, world["centres"])).all()
    assert detector.unknown(near, None).mean() < 0.25 and detector.unknown(far, None).all()


def test_threshold_flags_the_chosen_share_of_known_validation_requests(world, detector):
    flagged = detector.unknown(world["val"], world["val_proba"]).mean()
    assert detector.false_unknown_rate == 0.1 and 0.05 <= flagged <= 0.11
    assert detector.centroids.shape == (CLASSES * 3, DIM)


def test_detector_beats_a_softmax_threshold_calibrated_the_same_way(world, detector):
    emb = np.concatenate([world["test_known"], world["unknown"]])
    proba = _proba(emb, world["centres"])
    is_unknown = np.r_[np.zeros(len(world["test_known"]), bool), np.ones(len(world["unknown"]), bool)]
    softmax_threshold = -calibrated_threshold(-world["val_proba"].max(1), 0.1)
    softmax_flags = proba.max(1) < softmax_threshold
    ours = detector.unknown(emb, proba)

    def f1(flags):
        hits = (flags & is_unknown).sum()
        return 2 * hits / (flags.sum() + is_unknown.sum())

    assert f1(ours) > 0.9 and f1(ours) > f1(softmax_flags) + 0.2
    assert (detector.scores(emb, proba)[is_unknown].min()) > np.median(detector.scores(emb, proba)[~is_unknown])


def test_round_trip_through_json(world, detector):
    again = OpenIntentDetector.from_dict(json.loads(json.dumps(detector.to_dict())))
    emb = np.concatenate([world["test_known"], world["unknown"]])
    proba = _proba(emb, world["centres"])
    np.testing.assert_allclose(again.scores(emb, proba), detector.scores(emb, proba), atol=1e-6)
    np.testing.assert_array_equal(again.unknown(emb, None), detector.unknown(emb, None))
    assert again.threshold == detector.threshold and again.classes == CLASSES


def test_without_probabilities_it_scores_by_distance_alone(world):
    plain = OpenIntentDetector.fit(world["train"], world["y"], world["val"], world["val_y"])
    assert plain.threshold is None and plain.confidence_stats is None
    assert plain.centroids.shape == (CLASSES * 8, DIM) and plain.false_unknown_rate == 0.1  # the defaults
    assert plain.unknown(world["unknown"], None).mean() > 0.9
    with pytest.raises(ValueError, match="fitted without validation probabilities"):
        plain.scores(world["unknown"], _proba(world["unknown"], world["centres"]))
    assert OpenIntentDetector.from_dict(plain.to_dict()).threshold is None


def test_takes_torch_tensors_and_empty_batches(world, detector):
    emb = torch.from_numpy(world["test_known"][:3])
    assert detector.unknown(emb, torch.from_numpy(_proba(world["test_known"][:3], world["centres"]))).shape == (3,)
    assert detector.unknown(np.zeros((0, DIM), np.float32), np.zeros((0, CLASSES))).shape == (0,)


def test_bad_fit_input_names_what_is_wrong(world):
    train, y, val, val_y = world["train"], world["y"], world["val"], world["val_y"]
    cases = [
        ((np.zeros((0, DIM)), y[:0], val, val_y), {}, "train_emb is empty"),
        ((train, np.zeros(len(train), int), val, val_y), {}, "holds 1 class"),
        ((train, y[:-1], val, val_y), {}, "train_y must be a 1-D array of 300"),
        ((train, y, val[:, :8], val_y), {}, "val_emb has rows of 8 dimensions"),
        ((train * 2, y, val, val_y), {}, "L2-normalised"),
        ((train, y.astype(float), val, val_y), {}, "integer class indices"),
        ((train, y, val[:1], val_y[:1]), {}, "at least two"),
        ((train, y, val, val_y, world["val_proba"][:, :3]), {}, "val_proba has 3 columns"),
        ((train, y, val, val_y), {"false_unknown_rate": 1.5}, "false_unknown_rate"),
        ((train, y, val, val_y), {"centroids_per_class": 0}, "centroids_per_class"),
    ]
    for args, knobs, message in cases:
        with pytest.raises(ValueError, match=message):
            OpenIntentDetector.fit(*args, **knobs)
    nan = train.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="train_emb holds NaN"):
        OpenIntentDetector.fit(nan, y, val, val_y)


def test_bad_serving_input_names_what_is_wrong(world, detector):
    emb = world["test_known"][:4]
    with pytest.raises(ValueError, match="emb has rows of 7 dimensions"):
        detector.unknown(np.ones((2, 7)) / np.sqrt(7), None)
    with pytest.raises(ValueError, match=r"proba has 4 columns; the detector was fitted on 5"):
        detector.unknown(emb, np.full((4, 4), 0.25))
    with pytest.raises(ValueError, match="one row per embedding"):
        detector.unknown(emb, _proba(emb[:2], world["centres"]))
    with pytest.raises(ValueError, match="2-D array"):
        detector.scores(emb[0], None)


def test_corrupt_dict_names_the_field(detector):
    good = detector.to_dict()
    cases = [
        ("not a dict", "expected a dict"),
        ({**good, "format": "other/9"}, "'format'"),
        ({k: v for k, v in good.items() if k != "centroids"}, "'centroids' is missing"),
        ({**good, "centroids": "@@not base64@@"}, "'centroids' is not valid base64"),
        ({**good, "centroids": good["centroids"][:-8]}, "'centroids'"),
        ({**good, "dim": 7}, "'centroids' holds"),
        ({**good, "classes": "5"}, "'classes' must be int"),
        ({**good, "distance_stats": [0.1]}, "'distance_stats'"),
        ({**good, "threshold": None}, "both be set or both be null"),
        ({**good, "false_unknown_rate": 2.0}, "'false_unknown_rate' must be between 0 and 1"),
        ({**good, "distance_threshold": float("nan")}, "'distance_threshold' must be a finite number"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            OpenIntentDetector.from_dict(bad)


def test_calibrated_threshold_checks_its_input():
    assert calibrated_threshold(np.arange(100.0), 0.1) == pytest.approx(89.1)
    for bad in (np.array([]), np.array([1.0, np.nan])):
        with pytest.raises(ValueError, match="known_scores"):
            calibrated_threshold(bad, 0.1)


# ------------------------------------------------------- benchmark protocol
INTENTS = [f"intent_{i:02d}" for i in range(12)]


def test_known_intent_draws_are_seeded_sized_and_nested():
    quarter, half = draw_known(INTENTS, 0.25, 0), draw_known(INTENTS, 0.5, 0)
    assert len(quarter) == 3 and len(half) == 6 and set(quarter) <= set(half)
    assert draw_known(INTENTS, 0.5, 0) == half and draw_known(INTENTS, 0.5, 1) != half
    with pytest.raises(ValueError, match="need at least 2 known and 1 unknown"):
        draw_known(INTENTS, 0.05, 0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        draw_known(INTENTS, 1.0, 0)


def test_open_split_trains_on_known_intents_and_tests_on_everything():
    train = ([f"t{i}" for i in range(120)], [INTENTS[i % 12] for i in range(120)])
    test = ([f"x{i}" for i in range(24)], [INTENTS[i % 12] for i in range(24)])
    known = draw_known(INTENTS, 0.5, 2)
    split = open_split(train, test, known, 0.2, seed=2)
    assert set(split.fit_labels) == set(split.val_labels) == set(known)
    assert len(split.fit_texts) + len(split.val_texts) == 60 and not set(split.fit_texts) & set(split.val_texts)
    assert all(split.val_labels.count(k) == 2 for k in known)
    assert split.test_texts == test[0]
    assert [g == UNKNOWN for g in split.test_gold] == [label not in known for label in test[1]]
    capped = open_split(train, test, known, 0.2, seed=2, max_per_intent=5)
    assert all((capped.fit_labels + capped.val_labels).count(k) == 5 for k in known)
    with pytest.raises(ValueError, match="named 'unknown'"):
        open_split(train, test, ["unknown", "intent_01"], 0.2, seed=0)


def test_open_metrics_count_unknown_as_one_more_class():
    gold = ["a", "a", "b", UNKNOWN, UNKNOWN, UNKNOWN]
    said = ["a", UNKNOWN, "b", UNKNOWN, UNKNOWN, "a"]
    m = open_metrics(gold, said, ["a", "b"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["unknown_f1"] == pytest.approx(2 * 2 / (3 + 3))  # 2 hits, 3 said, 3 true
    assert m["macro_f1"] == pytest.approx(np.mean([2 * 1 / (2 + 2), 1.0, 2 / 3]))
    assert thresholded(["a", "b"], np.array([0.4, 0.9]), 0.5) == [UNKNOWN, "b"]
    with pytest.raises(ValueError, match="as many predictions"):
        open_metrics(gold, said[:-1], ["a", "b"])


def test_summary_table_gives_mean_and_sd_over_draws():
    rows = [
        {"ratio": 0.75, "system": "ours + detector", "accuracy": a, "macro_f1": 0.8, "unknown_f1": 0.7, "train_seconds": 60.0}
        for a in (0.80, 0.90)
    ]
    (entry,) = summarise(rows)
    assert entry["accuracy"] == pytest.approx(0.85) and entry["accuracy_sd"] == pytest.approx(0.0707, abs=1e-4)
    assert "| 75 % | ours + detector | 85.0 ± 7.1 % | 80.0 ± 0.0 % | 70.0 ± 0.0 % | 1.0 min | 2 |" in table([entry])


def test_the_command_runs_the_protocol_and_writes_its_report(tmp_path, monkeypatch, capsys):
    """`python -m training.bench_open_intent` end to end on the tiny fixture, the fine-tuning and Rasa
    training replaced by fakes (they have their own tests): draws, splits, metrics, table and report."""
    import training.bench_open_intent as bench

    seen = []

    def fake(system):
        def run(split, *args):
            seen.append((system, tuple(split.known), len(split.fit_texts)))
            said = [g if g != UNKNOWN else split.known[0] for g in split.test_gold]  # never says unknown
            return {f"{system} + detector": {"predicted": said, "train_seconds": 1.0}}
        return run

    monkeypatch.setattr(bench, "run_ours", fake("ours"))
    monkeypatch.setattr(bench, "run_diet", fake("DIET"))
    monkeypatch.setattr(bench, "SYSTEMS", ("ours + detector", "DIET + detector"))
    fixture = Path(__file__).parent / "fixtures" / "intents_tiny.csv"
    out = tmp_path / "report"
    assert bench.main(["--train", str(fixture), "--test", str(fixture), "--ratios", "0.5", "--draws", "2", "--out", str(out)]) == 0
    assert [s for s, _, _ in seen] == ["ours", "DIET", "ours", "DIET"] and all(len(known) == 2 for _, known, _ in seen)
    assert all(n == 10 for _, _, n in seen)  # 2 known intents x 6 examples, 1 of each held out for calibration
    report = json.loads((out / "results.json").read_text())
    assert {r["accuracy"] for r in report["rows"]} == {0.5}  # the 12 known requests right, the 12 unknown wrong
    assert all(r["unknown_f1"] == 0.0 for r in report["rows"])
    printed = capsys.readouterr().out
    assert "| 50 % | ours + detector | 50.0 ± 0.0 % |" in printed and "CPU:" in printed and "Zhang et al., 2021" in printed
    assert (out / "table.md").read_text() in printed
    assert "Ours: 8 epochs; DIET: 100 epochs; thresholds flag 10% of held-out known requests (FallbackClassifier: 0.7)" in printed
    with pytest.raises(SystemExit):
        bench.main(["--train", str(fixture), "--test", str(fixture), "--systems", "bert"])
