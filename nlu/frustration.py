"""A small, explainable detector of customers who are fed up with the assistant.

A message scores points for each signal it shows; at `threshold` points or
more the customer is handed to a human. Every point can be traced to a
signal in `Assessment.signals`:

- ``lexicon``: words and phrases of frustration with the service ("useless",
  "waste of time", "how many times", "not what I asked"); swear words weigh
  more, mild words ("again", "still") less. English only;
- ``shouting``: mostly capital letters over several words of a script with
  capitals (bank acronyms such as PIN, ATM, IBAN do not count);
- ``punctuation``: bursts of ``?!`` ("really??", "now!!!", full-width "？？");
- ``repeat``: the customer asks again what they asked in one of their last
  messages (word overlap, `core.language.word_overlap`);
- ``similar``: with a sentence encoder, the message reads like the frustrated
  examples in ``frustration_examples.csv`` (similarity-weighted vote of the
  nearest labelled examples, which are given as evidence). A word list misses
  new phrasings ("this is a nightmare"); the neighbours catch many of them.
  The bundled examples are English: in another language only examples given
  to the detector count.

For a `language` other than English (config.yml's ``language:``, through
`nlu.FrustrationReader`) the English word lists and examples are left out;
capitals, ``?!`` bursts, asking again and examples given in that language
still count.

Measure it on a labelled sample with
``python -m training.eval_frustration tests/fixtures/frustration.csv``
(add ``--lexicon-only`` to leave the encoder out). The sample's ``tuning``
rows were used to revise the word list and set the thresholds; its
``holdout`` rows were written afterwards and never used for tuning.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from core.language import CJK_RUN, ENGLISH, is_english, word_overlap, words

EXAMPLES = Path(__file__).with_name("frustration_examples.csv")

# Phrases of frustration with the service, each a regular expression on lower-cased English text.
STRONG = [
    r"\b(ridiculous|useless|pointless|hopeless|unacceptable|unbelievable|pathetic|outrageous|absurd)\b",
    r"\b(disgrace(ful)?|incompetent|terrible service|worst|rubbish|garbage|nonsense)\b",
    r"\bwaste of (my )?time\b",
    r"\b(fed up|sick of|sick and tired|had enough|i give up|losing my patience|i'?m done with)\b",
    r"\b(frustrat(ed|ing)|annoy(ed|ing)|angry|furious|pissed)\b",
    r"\b(a joke|kidding me|come on|for god'?s sake|what a pain|such a pain)\b",
    r"\bhow many times\b",
    r"\b(already (told|said|asked)|told you already|i said)\b",
    r"\bfor the (second|third|fourth|fifth|last|\d+(st|nd|rd|th)) time\b",
    r"\b(third|fourth|fifth|\d+(rd|th)) time\b",
    # "(the wrong PIN) too many times" counts attempts, not the customer's patience: of
    # BANKING77's training questions this phrase was the word list's commonest false alarm.
    r"\b(?<!too )(?<!to )(three|four|five|many) times\b",
    r"\b(not|isn'?t|wasn'?t|that'?s not) what i (asked|wanted|meant|said)\b",
    r"\bnothing to do with (my|the) question\b",
    r"\b(not|doesn'?t|don'?t|isn'?t|aren'?t|you'?re not) (help(ing|ful)?|listening)\b",
    r"\b(unhelpful|thanks for nothing)\b",
    r"\b(you|it) (don'?t|doesn'?t) (understand|get it)\b",
    r"\b(even listening|even read)\b",
    r"\bnobody (cares|helps|is helping|ever)\b",
    r"\bno one (cares|helps)\b",
    r"\bmakes no sense\b",
    r"\b(stupid|dumb|useless) (bot|robot|machine|app|answer|link)\b",
    r"\bsame (useless )?answer\b",
    r"\bclose my account if\b",
    r"\bjust (answer|get me)\b",
    r"\banswer my question\b",
    r"\bnothing works\b",
    r"\bagain and again\b",
    r"\bwhat kind of bank\b",
    r"\bis anyone there\b",
    r"\bon hold for\b",
    r"\bsomeone who (actually|really) knows\b",
    r"\bkeep (asking|sending|giving|saying|telling|repeating)\b",
    r"\bstop (sending|giving|telling|asking)\b",
    r"\bno idea what\b",
    r"\bwrong with (you|this|your)\b",
    r"\b(nothing|never) (ever )?works\b",
    r"\bnothing ever\b",
    r"\b(nobody|no one) (is )?(doing|answering|replying|responding)\b",
    r"\ba simple question\b",
    r"\b(wrong|not it) again\b|\bagain wrong\b",
    r"\b(exhausted|tired of)\b",
]
SWEARING = [r"\b(wtf|fuck\w*|shit\w*|damn\w*|bloody|crap|the hell|idiots?)\b"]
MILD = [
    r"\b(again|still|seriously|complain\w*|never|nothing)\b",
    r"\b(ugh+|argh+|omg|ffs|jeez|sigh)\b",
    r"\bfor (days|weeks|hours|ages)\b",
    r"\byou (people|guys)\b",
]
# Upper-case words that are ordinary banking vocabulary, not shouting.
ACRONYMS = {
    "ATM", "PIN", "IBAN", "SWIFT", "BIC", "ID", "OK", "UK", "US", "USA", "EU", "EUR", "USD", "GBP",
    "SEPA", "CVV", "APR", "ISA", "SMS", "FAQ", "URGENT", "I", "PDF", "VAT", "ASAP",
}

DEFAULT_WEIGHTS: Dict[str, float] = {
    "lexicon": 1.0,  # per strong phrase
    "swearing": 1.0,  # per swear word
    "mild": 0.5,  # per mild word
    "shouting": 1.0,
    "punctuation": 0.5,  # per burst of ?! (two or more)
    "repeat": 1.0,
    "similar": 1.0,
}


@dataclasses.dataclass(frozen=True)
class Assessment:
    """The detector's verdict on one message, with the points each signal gave."""

    score: float
    frustrated: bool
    signals: Dict[str, float]
    evidence: List[str]
    # Flagged by what the customer wrote and did (word list, capitals, ?!, asking again),
    # without the nearest-examples guess: where a sentiment model reads the message, that
    # model is the better judge of the rest (`nlu.sentiment.frustrated`).
    worded: bool = False


_LETTER_RUNS = re.compile(r"[^\W\d_]{3,}")  # words of three letters or more, any script
_BURSTS = re.compile(r"[!?！？]{2,}")
# What the bundled English examples judge: text with a Latin letter, digit or apostrophe. To the
# English encoder, Chinese questions ("怎么修改密码") read like "stupid bot".
_ENGLISH_EXAMPLES_JUDGE = re.compile(r"[a-z0-9']")


class FrustrationDetector:
    """Scores a customer message for frustration with the assistant."""

    def __init__(
        self,
        threshold: float = 1.0,
        weights: Optional[Mapping[str, float]] = None,
        repeat_overlap: float = 0.75,
        repeat_min_words: int = 3,
        encoder: Any = None,
        examples: Optional[Sequence[Mapping[str, str]]] = None,
        neighbours: int = 5,
        similar_vote: float = 0.9,
        language: str = ENGLISH,
    ) -> None:
        """Build a detector.

        `threshold`: points needed to hand off; `repeat_overlap`: word overlap
        that counts as asking again; `encoder`: a sentence-transformers model
        (``core.encoder.load_encoder()``) to compare messages with labelled
        `examples` (default: ``frustration_examples.csv``); `similar_vote`:
        share of the `neighbours` nearest examples' similarity that must be
        frustrated for the ``similar`` signal to fire; `language`: the
        customers' language (the English word lists and default examples
        apply only to English).
        """
        self.threshold = threshold
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        self.repeat_overlap = repeat_overlap
        self.repeat_min_words = repeat_min_words
        self.language = language
        english = is_english(language)
        self._strong = [re.compile(p) for p in STRONG] if english else []
        self._swearing = [re.compile(p) for p in SWEARING] if english else []
        self._mild = [re.compile(p) for p in MILD] if english else []
        self.encoder = encoder
        self.neighbours = neighbours
        self.similar_vote = similar_vote
        self._examples: List[Mapping[str, str]] = []
        self._example_vectors = None
        self._bundled_examples = examples is None
        if examples is None and english:
            examples = read_sample(str(EXAMPLES))
        if encoder is not None and examples:
            self._examples = list(examples)
            self._example_vectors = encoder.encode(
                [e["text"] for e in self._examples], batch_size=64, normalize_embeddings=True
            )

    def _similar(self, text: str):
        """Similarity-weighted share of frustrated examples among the nearest ones, and those examples."""
        from core.encoder import embed_few  # cached: the answer retriever reuses this vector

        vector = embed_few(self.encoder, [text])[0]
        similarities = self._example_vectors @ vector
        nearest = similarities.argsort()[::-1][: self.neighbours]
        weights = similarities[nearest].clip(min=0)
        frustrated = sum(w for w, i in zip(weights, nearest) if str(self._examples[i]["label"]) == "1")
        share = float(frustrated / weights.sum()) if weights.sum() > 0 else 0.0
        return share, [self._examples[i]["text"] for i in nearest[:3]]

    def _judged_by_examples(self, text: str) -> bool:
        """Whether the labelled examples can judge `text`: the bundled English ones only text with Latin words."""
        if self._bundled_examples:
            return _ENGLISH_EXAMPLES_JUDGE.search((text or "").lower()) is not None
        return bool(words(text))

    def assess(self, text: str, previous: Sequence[str] = ()) -> Assessment:
        """Score `text`, given the customer's previous messages (most recent last)."""
        lowered = (text or "").lower()
        signals: Dict[str, float] = {}
        evidence: List[str] = []

        for name, patterns in (("lexicon", self._strong), ("swearing", self._swearing), ("mild", self._mild)):
            hits = [m.group(0) for p in patterns for m in p.finditer(lowered)]
            if name == "mild":  # "still ... still" is one hesitation, not two: each mild word counts once
                hits = list(dict.fromkeys(hits))
            if hits:
                signals[name] = self.weights[name] * len(hits)
                evidence.extend(hits)

        # Words of scripts with capitals only (Chinese, Arabic or Thai have none to shout with);
        # Chinese written straight against Latin letters is cut off ("我的CARD": CARD).
        lettered = [w for w in _LETTER_RUNS.findall(CJK_RUN.sub(" ", text or "")) if w.lower() != w.upper()]
        shouted = [w for w in lettered if w.isupper() and w not in ACRONYMS]
        if len(shouted) >= 2 and len(shouted) >= 0.6 * len(lettered):
            signals["shouting"] = self.weights["shouting"]
            evidence.append("CAPITALS")

        bursts = _BURSTS.findall(text or "")
        if bursts:
            signals["punctuation"] = self.weights["punctuation"] * len(bursts)
            evidence.extend(bursts)

        if len(words(text)) >= self.repeat_min_words:
            for earlier in list(previous)[-3:]:
                if word_overlap(text, earlier) >= self.repeat_overlap:
                    signals["repeat"] = self.weights["repeat"]
                    evidence.append(f"asked again: {earlier!r}")
                    break

        if self._example_vectors is not None and self._judged_by_examples(text):
            share, nearest = self._similar(text)
            if share >= self.similar_vote:
                signals["similar"] = self.weights["similar"]
                evidence.append(f"reads like: {nearest[0]!r}")

        score = round(sum(signals.values()), 3)
        worded = round(score - signals.get("similar", 0.0), 3) >= self.threshold
        return Assessment(score, score >= self.threshold, signals, evidence, worded)

    def is_frustrated(self, text: str, previous: Sequence[str] = ()) -> bool:
        """Whether `text` should send the customer to a human."""
        return self.assess(text, previous).frustrated


def read_sample(path: str, split: Optional[str] = None) -> List[Dict[str, str]]:
    """Rows of a labelled sample (columns text, label 0/1; optional previous, split), via `core.records`."""
    from core.records import read_csv

    return [dict(row) for _, row in read_csv(path, required=("text", "label"))
            if split is None or row.get("split") == split]


def evaluate(detector: FrustrationDetector, rows: Iterable[Mapping[str, str]]) -> Dict[str, float]:
    """Precision, recall and F1 of `detector` on labelled rows, with the counts behind them."""
    tp = fp = fn = tn = 0
    for row in rows:
        previous = [row["previous"]] if row.get("previous") else []
        predicted = detector.is_frustrated(row["text"], previous)
        actual = str(row["label"]).strip() == "1"
        tp += predicted and actual
        fp += predicted and not actual
        fn += actual and not predicted
        tn += not predicted and not actual
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
