"""Retrain from what the assistant has seen, gate every part, and promote only what is not worse.

    python -m training.retrain                    # intent + Rasa model, answer index, recommender; gate; promote
    python -m training.retrain --promote-passing  # promote the parts that pass even when another fails
    python -m training.retrain --rollback         # put the previous release back

Steps:

1. Export the reviewed queue (`training.review export`) so reviewed messages
   are in var/review/reviewed_nlu.yml and var/review/reviewed.jsonl (kept out
   of git and the images; added to the data and history read below).
2. Train candidates into ``models/candidate/``: the intent classifier
   continues from the live adapter (``models/intent``, or the one inside the
   Rasa model served now when that folder is missing: the adapter is trained
   further on all NLU data with a head started afresh from the class
   centroids; ``--full`` fine-tunes a new adapter), the answer index is
   rebuilt from bot/history/ (`training.build_index`) and the recommender
   retrained (`training.train_recommender`).
3. Gate each part (`training.gates`): candidate and live scored on the same
   fixed held-out data: intent accuracy and macro-F1 on
   ``bot/tests/heldout_nlu.yml``, answer precision@1 on
   ``bot/tests/heldout_answers.jsonl``, recommender NDCG@10 on the newest
   ``--recommender-holdout`` (15%) of interactions, both recipes refitted on
   the earlier ones. A part passes when no figure is lower than live by more than
   its tolerance (``--intent-tolerance`` 0, ``--index-tolerance`` 0,
   ``--recommender-tolerance`` 0.01). A candidate that fails to build or load
   fails its gate, with the reason.
4. Rasa model: when the intent candidate passes, a Rasa model is trained
   around it (config.yml with ``pretrained_adapter`` set to the candidate) into
   ``models/candidate/<version>.tar.gz`` and read whole
   (`core.model_check.check_model`); if either fails, the intent part fails.
   ``--no-rasa-model`` skips it (the Rasa servers keep their model).
5. Promote all parts, or none (``--promote-passing``: the passing ones): the
   live folders move to ``models/previous/`` (one generation, with what the
   release in force served, for ``--rollback``), the candidates take their
   place, the archive moves into ``models/``, and the release marker
   ``models/release.json`` (`core.releases`) is written last: the serving
   processes switch to it without a restart.
6. Audit: ``model.retrain``, then ``model.promote`` or ``model.refuse``
   (``model.rollback`` for ``--rollback``) in the audit log, actor
   ``retrain:<--actor, default the OS user>``, with versions and gate figures.

It prints per part the figures live -> candidate, pass or fail and why, and
writes the same report to ``reports/retrain/<version>.json`` and ``.md``.
Exit status: 0 promoted (or rolled back), 1 refused (or nothing to roll
back), 2 a step could not run.
"""
from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from core import audit, releases
from core.files import write_text_atomically
from core.model_check import ModelCheckError, check_model, newest_model
from core.review import DEFAULT_HISTORY_EXPORT, DEFAULT_NLU_EXPORT
from core.settings import PROJECT_ROOT, get_settings
from training import gates
from training.gates import PartGate

DEFAULT_DATA = PROJECT_ROOT / "bot" / "data"
DEFAULT_HISTORY = PROJECT_ROOT / "bot" / "history"
DEFAULT_REPORTS = PROJECT_ROOT / "reports" / "retrain"
CATALOGUE = PROJECT_ROOT / "bot" / "catalogue" / "items.jsonl"
PARTS = ("intent", "index", "recommender")
PREVIOUS_RELEASE = "release.json"  # in models/previous/: what the release before the live one served
INTENT_IN_ARCHIVE = "components/train_nlu.TransformerIntentClassifier"


class RetrainError(RuntimeError):
    """A step of the retraining cannot run (missing data, failed build)."""


def _reviewed(path: Path) -> List[Path]:
    """The review export at `path` (var/review/) when it exists, to train on beside bot/."""
    return [path] if path.exists() else []


def _reviewed_nlu() -> List[Path]:
    """The reviewed NLU examples (var/review/reviewed_nlu.yml) when the export holds any (an empty queue writes none)."""
    from training.intent_data import DataFileError, read_examples

    try:
        return [DEFAULT_NLU_EXPORT] if read_examples(DEFAULT_NLU_EXPORT)[0] else []
    except DataFileError:
        return []


@dataclasses.dataclass
class Layout:
    """Where the live, candidate and previous versions of each part live."""

    model_dir: Path
    live: Dict[str, Path]
    candidate_root: Path
    previous_root: Path

    @classmethod
    def default(cls, model_dir: Optional[Path] = None) -> "Layout":
        settings = get_settings()
        model_dir = Path(model_dir or settings.model_dir)
        return cls(
            model_dir=model_dir,
            live={"intent": model_dir / "intent", "index": Path(settings.index_dir),
                  "recommender": Path(settings.recommender_dir)},
            candidate_root=model_dir / "candidate",
            previous_root=model_dir / "previous",
        )

    def candidate(self, part: str) -> Path:
        return self.candidate_root / part

    def previous(self, part: str) -> Path:
        return self.previous_root / part


# ----------------------------------------------------------------- what is served now

def served_now(model_dir: Path) -> Dict[str, Any]:
    """The release in force as a dict, or (before the first release) the newest Rasa archive in `model_dir`."""
    release = releases.read(model_dir)
    if release is not None:
        return release.as_dict()
    archive = newest_model(model_dir)
    return {"version": None, "parts": {}, "rasa_model": str(archive) if archive else None, "gate": {}}


def unpack_intent(archive: Path, out: Path) -> Optional[Path]:
    """The intent model folder inside a Rasa archive, unpacked into `out`; None when it holds none."""
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.lstrip("./").startswith(INTENT_IN_ARCHIVE)
                   and (m.isfile() or m.isdir())]
        if not members:
            return None
        tar.extractall(out, members=members)  # names checked above: only the classifier's folder
    folders = sorted((out / "components").glob("train_nlu.TransformerIntentClassifier*"))
    return folders[0] if folders else None


def live_intent(layout: Layout, scratch: Path) -> Optional[Path]:
    """The live intent model: ``models/intent``, else the one inside the Rasa model served now (unpacked)."""
    if layout.live["intent"].exists():
        return layout.live["intent"]
    archive = served_now(layout.model_dir).get("rasa_model")
    if archive and Path(archive).is_file():
        return unpack_intent(Path(archive), scratch)
    return None


# ----------------------------------------------------------------- training

def train_intent_candidate(data: Sequence[Path], out: Path, live: Optional[Path], full: bool, epochs: Optional[int]) -> Path:
    """Fit the candidate intent model on all NLU data, continuing from the live adapter unless `full`."""
    from nlu.model import META_FILE, IntentModel, IntentModelConfig
    from training.intent_data import read_examples

    texts, labels = [], []
    for path in data:
        t, l, _ = read_examples(path)
        texts += t
        labels += l
    config = IntentModelConfig(device="auto")
    if live is not None and (live / META_FILE).exists():  # keep the live model's settings
        config = IntentModelConfig.from_dict(json.loads((live / META_FILE).read_text())["config"])
    if epochs:
        config.epochs = epochs
    continue_from = str(live) if live is not None and live.exists() and not full else None
    print(f"training the intent candidate on {len(texts)} examples of {len(set(labels))} intents"
          + (f", continuing from the adapter in {live}" if continue_from else ", new adapter"), flush=True)
    model = IntentModel.fit(texts, labels, config, progress=True, pretrained_adapter=continue_from,
                            continue_training=continue_from is not None)
    if out.exists():
        shutil.rmtree(out)
    model.save(out)
    return out


def pack_rasa_model(adapter: Path, out_dir: Path, name: str, data: Sequence[Path], config: Path) -> Path:
    """Train a Rasa model around the intent model in `adapter` into ``out_dir/<name>.tar.gz`` and read it whole.

    Rasa's training cache is off for this run: the adapter's path would not
    change between retrains, and a cached classifier would hide a new one.
    Raises `RetrainError` (training failed) or `ModelCheckError` (the archive is broken).
    """
    import yaml

    content = yaml.safe_load(config.read_text())
    for component in content["pipeline"]:
        if component["name"] == "nlu.TransformerIntentClassifier":
            component["pretrained_adapter"] = str(adapter.resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    packed = out_dir / "config.yml"
    packed.write_text(yaml.safe_dump(content, sort_keys=False))
    rasa = str(Path(sys.executable).with_name("rasa"))
    env = {**os.environ, "RASA_MAX_CACHE_SIZE": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    command = [rasa, "train", "--config", str(packed), "--domain", "bot/domain", "--data", *map(str, data),
               "--out", str(out_dir), "--fixed-model-name", name, "--quiet"]
    print(f"training the Rasa model around {adapter}", flush=True)
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env)
    archive = out_dir / f"{name}.tar.gz"
    if result.returncode != 0 or not archive.exists():
        raise RetrainError(f"rasa train failed (exit {result.returncode}): {' '.join(command)}")
    check_model(archive)
    return archive


def _run_module(module: str, args: List[str], database_url: Optional[str] = None) -> None:
    """Run a training module; with `database_url`, it reads that database instead of the configured one."""
    env = {**os.environ, **({"ASSISTANT_DATABASE_URL": database_url} if database_url else {})}
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env=env)
    if result.returncode != 0:
        raise RetrainError(f"python -m {module} {' '.join(args)} failed (exit {result.returncode})")


# ----------------------------------------------------------------- promotion and rollback

def promote(layout: Layout, parts: Sequence[str], archive: Optional[Path]) -> Optional[Path]:
    """Move the live parts to previous/ and the candidates into place; the archive into model_dir (returned).

    previous/ is left holding exactly one generation: the parts replaced now
    and, in ``previous/release.json``, what the release in force served.
    """
    served = served_now(layout.model_dir)
    layout.previous_root.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        if layout.previous(part).exists():
            shutil.rmtree(layout.previous(part))
    for part in parts:
        live, candidate = layout.live[part], layout.candidate(part)
        if not candidate.exists():
            raise RetrainError(f"no candidate {part} at {candidate}; nothing promoted for it")
        if live.exists():
            shutil.move(str(live), str(layout.previous(part)))
        live.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(candidate), str(live))
    promoted_archive = None
    if archive is not None:
        promoted_archive = layout.model_dir / archive.name
        shutil.move(str(archive), str(promoted_archive))
    write_text_atomically(layout.previous_root / PREVIOUS_RELEASE, json.dumps(served, indent=2, sort_keys=True))
    return promoted_archive


def rollback(layout: Layout) -> Tuple[List[str], Optional[Dict[str, Any]]]:
    """Swap each previous part with the live one; returns the parts rolled back and the release restored.

    The release restored is the one saved at promotion; what was live goes to
    previous/ in its place, so a second ``--rollback`` goes forward again.
    """
    saved = layout.previous_root / PREVIOUS_RELEASE
    restored = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else None
    rolled = []
    for part, live in layout.live.items():
        previous = layout.previous(part)
        if not previous.exists():
            continue
        swap = previous.with_name(previous.name + ".swap")
        if swap.exists():
            shutil.rmtree(swap)
        if live.exists():
            shutil.move(str(live), str(swap))
        shutil.move(str(previous), str(live))
        if swap.exists():
            shutil.move(str(swap), str(previous))
        rolled.append(part)
    if restored is not None:
        write_text_atomically(saved, json.dumps(served_now(layout.model_dir), indent=2, sort_keys=True))
    return rolled, restored


# ----------------------------------------------------------------- report

@dataclasses.dataclass
class Report:
    """What a retrain did: the gates, the decision, the release."""

    version: str
    started: float
    command: str
    gates: Dict[str, PartGate]
    decision: str = "refuse"  # promote | promote-passing | refuse
    promoted: List[str] = dataclasses.field(default_factory=list)
    rasa_model: Optional[str] = None
    previous_version: Optional[str] = None
    seconds: float = 0.0

    def figures(self) -> Dict[str, Any]:
        """The gate figures as the release and the audit log keep them."""
        return {part: {"passed": g.passed, "tolerance": g.tolerance, "live": g.live, "candidate": g.candidate,
                       "reasons": g.reasons} for part, g in self.gates.items()}

    def as_dict(self) -> Dict[str, Any]:
        return {"version": self.version, "started": self.started, "seconds": round(self.seconds, 1),
                "command": self.command, "decision": self.decision, "promoted": self.promoted,
                "rasa_model": self.rasa_model, "previous_version": self.previous_version,
                "gates": {part: g.as_dict() for part, g in self.gates.items()}}

    def lines(self) -> List[str]:
        """The report as printed: per part the verdict and what changed, then the decision."""
        out = []
        for part, gate in self.gates.items():
            verdict = "PASS" if gate.passed else "FAIL"
            out.append(f"{part}: {verdict} (tolerance {gate.tolerance:g})")
            out += [f"  {line}" for line in gate.changes]
            out += [f"  fails: {reason}" for reason in gate.reasons]
        return out

    def markdown(self) -> str:
        rows = ["| part | figure | live | candidate | tolerance | verdict |", "|---|---|---:|---:|---:|---|"]
        for part, gate in self.gates.items():
            for name in gates.HEADLINE[part]:
                live = "-" if gate.live is None else f"{gate.live[name]:.3f}"
                cand = "-" if gate.candidate is None else f"{gate.candidate[name]:.3f}"
                rows.append(f"| {part} | {name} | {live} | {cand} | {gate.tolerance:g} | "
                            f"{'pass' if gate.passed else 'FAIL'} |")
        details = "\n".join(f"- {line}" if not line.startswith("  ") else f"  - {line.strip()}" for line in self.lines())
        return (f"# Retrain {self.version}\n\n`{self.command}`\n\n{chr(10).join(rows)}\n\n{details}\n\n"
                f"Decision: **{self.decision}**" + (f" ({', '.join(self.promoted)})" if self.promoted else "")
                + (f"; Rasa model {self.rasa_model}" if self.rasa_model else "")
                + f"; {self.seconds:.0f} s in all.\n")


def write_report(report: Report, folder: Path) -> List[Path]:
    """``<version>.json`` and ``<version>.md`` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{report.version}.json", folder / f"{report.version}.md"]
    write_text_atomically(paths[0], json.dumps(report.as_dict(), indent=2, sort_keys=True, default=str))
    write_text_atomically(paths[1], report.markdown())
    return paths


# ----------------------------------------------------------------- the run

def build_candidates(args: argparse.Namespace, layout: Layout, live: Optional[Path]) -> Dict[str, PartGate]:
    """Build each candidate and gate it; a part that fails to build fails its gate with the reason."""
    results: Dict[str, PartGate] = {}

    def step(part: str, tolerance: float, build, judge) -> None:
        try:
            build()
        except Exception as exc:  # a failed build: this part is not promoted, the others are still judged
            results[part] = PartGate(part, tolerance, reasons=[f"the candidate could not be built: {exc}"])
        else:
            try:
                results[part] = judge()
            except Exception as exc:  # the held-out data cannot be read or split: not judged, so not passed
                results[part] = PartGate(part, tolerance, reasons=[f"the gate could not score it: {exc}"])
        if not results[part].passed:
            print(f"{part}: {'; '.join(results[part].reasons)}", file=sys.stderr, flush=True)

    def build_intent() -> None:
        target = layout.candidate("intent")
        if args.intent_candidate:
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(args.intent_candidate, target)
        else:
            train_intent_candidate((args.data or [DEFAULT_DATA]) + _reviewed_nlu(), target,
                                   live, args.full, args.epochs)

    step("intent", args.intent_tolerance, build_intent,
         lambda: gates.gate_intent(layout.candidate("intent"), live, args.heldout, args.intent_tolerance))
    if not args.skip_index:
        step("index", args.index_tolerance,
             lambda: _run_module("training.build_index", [str(args.history), *map(str, _reviewed(DEFAULT_HISTORY_EXPORT)),
                                                          "--out", str(layout.candidate("index"))]),
             lambda: gates.gate_index(layout.candidate("index"), layout.live["index"], args.heldout_answers,
                                      args.index_tolerance))
    if not args.skip_recommender:
        data = [*(["--interactions", str(args.interactions)] if args.interactions else []),
                *(["--customers", str(args.customers)] if args.customers else [])]
        step("recommender", args.recommender_tolerance,
             lambda: _run_module("training.train_recommender", ["--out", str(layout.candidate("recommender")), "--quiet", *data],
                                 args.database_url),
             lambda: gates.gate_recommender(layout.candidate("recommender"), layout.live["recommender"],
                                            recommender_split(args), args.recommender_tolerance))
    return results


def recommender_split(args: argparse.Namespace) -> gates.TimeSplit:
    """The time split of the interactions the recommender candidate was trained on (file or database)."""
    from recommender import load_customers, load_interactions, load_items
    from recommender import store

    items = load_items(CATALOGUE)
    if args.interactions:
        interactions = load_interactions(args.interactions)
        customers = load_customers(args.customers) if args.customers else None
    else:
        from core import db

        engine = db.connect(args.database_url)
        interactions, customers = store.read_interactions(engine), store.read_customers(engine)
    return gates.time_split(interactions, items, args.recommender_holdout, customers)


def add_rasa_model(args: argparse.Namespace, layout: Layout, version: str, gate: PartGate) -> Optional[Path]:
    """The candidate Rasa archive (trained, or copied from ``--rasa-candidate``), read whole; a failure fails `gate`."""
    try:
        if args.rasa_candidate:
            archive = layout.candidate_root / f"{version}.tar.gz"
            layout.candidate_root.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.rasa_candidate, archive)
            check_model(archive)
            return archive
        return pack_rasa_model(layout.candidate("intent"), layout.candidate_root, version,
                               [DEFAULT_DATA, *_reviewed_nlu()], args.config)
    except (RetrainError, ModelCheckError, OSError) as exc:
        gate.passed = False
        gate.reasons.append(f"the Rasa model around it failed: {exc}")
        return None


def run_rollback(layout: Layout, engine, actor: str) -> int:
    current = served_now(layout.model_dir)
    rolled, restored = rollback(layout)
    if not rolled and restored is None:
        print(f"nothing to roll back in {layout.previous_root}")
        return 1
    restored = restored or {}
    if not restored.get("rasa_model"):
        print("no Rasa model saved with the previous release: the Rasa servers keep the one they serve")
    release = releases.publish(parts={part: layout.live[part] for part in rolled}, rasa_model=restored.get("rasa_model"),
                               action="rollback", gate=restored.get("gate") or {}, model_dir=layout.model_dir)
    audit.record(engine, actor, "model.rollback", target=release.version,
                 detail={"from": current.get("version"), "restored": restored.get("version"), "parts": rolled,
                         "rasa_model": release.rasa_model})
    print(f"rolled back: {', '.join(rolled) or 'no folders'}; release {release.version} "
          f"(from {current.get('version')}, restoring {restored.get('version')}) published")
    return 0


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", type=Path, default=gates.HELDOUT_NLU, help="fixed held-out NLU file (never trained on)")
    parser.add_argument("--heldout-answers", type=Path, default=gates.HELDOUT_ANSWERS,
                        help="held-out questions with the id of the right answer (JSONL: question, answer_id)")
    parser.add_argument("--data", type=Path, action="append", help="NLU training data (default: bot/data/)")
    parser.add_argument("--history", type=Path, default=DEFAULT_HISTORY, help="question/answer history for the index")
    parser.add_argument("--interactions", type=Path, help="recommender interactions file (default: the database)")
    parser.add_argument("--customers", type=Path, help="recommender customers file (default: the database)")
    parser.add_argument("--model-dir", type=Path, help="folder of the live/previous/candidate models (default: settings)")
    parser.add_argument("--database-url", help="database for the audit log and interactions (default: settings)")
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / "config.yml", help="Rasa config the model is trained with")
    parser.add_argument("--intent-candidate", type=Path, help="use this trained intent model folder instead of training one")
    parser.add_argument("--rasa-candidate", type=Path, help="use this Rasa model archive instead of training one")
    parser.add_argument("--full", action="store_true", help="fine-tune a new adapter instead of continuing from the live one")
    parser.add_argument("--epochs", type=int, help="intent training epochs (default: the live model's)")
    parser.add_argument("--intent-tolerance", type=float, default=0.0, help="accuracy/macro-F1 a candidate may lose (0)")
    parser.add_argument("--index-tolerance", type=float, default=0.0, help="precision@1 a candidate may lose (0)")
    parser.add_argument("--recommender-tolerance", type=float, default=0.01, help="NDCG@10 a candidate may lose (0.01)")
    parser.add_argument("--recommender-holdout", type=float, default=0.15,
                        help="share of the newest interactions held out for the recommender gate (0.15)")
    parser.add_argument("--promote-passing", action="store_true", help="promote the parts that pass even if another fails")
    parser.add_argument("--skip-index", action="store_true", help="do not rebuild the answer index")
    parser.add_argument("--skip-recommender", action="store_true", help="do not retrain the recommender")
    parser.add_argument("--no-rasa-model", action="store_true", help="do not train a Rasa model around the intent candidate")
    parser.add_argument("--no-review-export", action="store_true", help="do not export the review queue first")
    parser.add_argument("--report-dir", type=Path, default=DEFAULT_REPORTS, help="where <version>.json/.md go")
    parser.add_argument("--actor", default=None, help="who runs it, for the audit log (default: the OS user)")
    parser.add_argument("--rollback", action="store_true", help="put the previous release back and stop")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    layout = Layout.default(args.model_dir)
    actor = f"retrain:{args.actor or getpass.getuser()}"
    try:
        from core import db

        engine = db.connect(args.database_url)  # before any work: every step is audited
    except Exception as exc:
        print(f"error: cannot open the database for the audit log: {exc}", file=sys.stderr)
        return 2
    if args.rollback:
        return run_rollback(layout, engine, actor)
    for path, what in ((args.heldout, "held-out NLU"), (args.heldout_answers, "held-out answers")):
        if not path.exists():
            print(f"error: {what} file {path} does not exist; the gate needs it", file=sys.stderr)
            return 2
    version = releases.new_version()
    report = Report(version, time.time(), " ".join(["python -m training.retrain", *(sys.argv[1:] if argv is None else argv)]), {})
    with tempfile.TemporaryDirectory(prefix="retrain-") as scratch:
        try:
            if not args.no_review_export:
                from core import review
                from core.domain import domain_intents
                from training.review import DEFAULT_HISTORY as REVIEWED_HISTORY, DEFAULT_NLU

                written = review.export(DEFAULT_NLU, REVIEWED_HISTORY, known_intents=domain_intents())
                print(f"review queue: {written['nlu_examples']} NLU examples, {written['history_pairs']} answers exported")
            live = live_intent(layout, Path(scratch))
            report.gates = build_candidates(args, layout, live)
        except Exception as exc:  # a step that is no part's (review export, reading the served model)
            print(f"error: {exc}\nnothing was promoted; the live models are unchanged", file=sys.stderr)
            return 2
    archive = None
    promoting = all(g.passed for g in report.gates.values()) or args.promote_passing
    if not args.no_rasa_model and report.gates["intent"].passed and promoting:
        archive = add_rasa_model(args, layout, version, report.gates["intent"])
    audit.record(engine, actor, "model.retrain", target=version,
                 detail={"parts": list(report.gates), "gate": report.figures()})
    return decide(args, layout, report, archive, engine, actor)


def decide(args: argparse.Namespace, layout: Layout, report: Report, archive: Optional[Path], engine, actor: str) -> int:
    """Promote (all, or the passing parts with ``--promote-passing``) or refuse; publish, audit and report."""
    passing = [part for part, gate in report.gates.items() if gate.passed]
    if len(passing) == len(report.gates):
        report.decision = "promote"
    elif args.promote_passing and passing:
        report.decision = "promote-passing"
    report.previous_version = served_now(layout.model_dir).get("version")
    if report.decision != "refuse":
        report.promoted = passing
        promoted_archive = promote(layout, passing, archive if "intent" in passing else None)
        report.rasa_model = str(promoted_archive) if promoted_archive else None
        releases.publish(parts={part: layout.live[part] for part in passing}, rasa_model=promoted_archive,
                         action="promote", gate=report.figures(), model_dir=layout.model_dir, version=report.version)
    report.seconds = time.time() - report.started
    print("\n".join(report.lines()))
    action = "model.refuse" if report.decision == "refuse" else "model.promote"
    audit.record(engine, actor, action, target=report.version,
                 detail={"previous": report.previous_version, "parts": report.promoted, "rasa_model": report.rasa_model,
                         "gate": report.figures()})
    paths = write_report(report, args.report_dir)
    if report.decision == "refuse":
        failed = [part for part in report.gates if part not in passing]
        print(f"REFUSED: {', '.join(failed)} failed the gate; live models unchanged, candidates left in "
              f"{layout.candidate_root} for inspection (--promote-passing promotes the parts that pass)")
    else:
        print(f"PROMOTED: {', '.join(report.promoted)}" + (f" and Rasa model {report.rasa_model}" if report.rasa_model else "")
              + f" as release {report.version} (previous kept in {layout.previous_root}; undo with --rollback) "
              f"in {report.seconds:.0f}s")
    print(f"report: {paths[0]} and {paths[1]}")
    return 1 if report.decision == "refuse" else 0


if __name__ == "__main__":
    sys.exit(main())
