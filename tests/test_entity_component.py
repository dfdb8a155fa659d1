"""The component as Rasa's entity extractor: trained from NLU YAML with entities, roles and synonyms,
beside RegexEntityExtractor and EntitySynonymMapper; broken annotations refused with file and line."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from nlu.importer import CheckedFileImporter, InvalidNLUData, check_nlu_file
from tests.test_entities import synthetic

TINY = dict(epochs=6, trainable_layers=2, batch_size=16, device="cpu")
DOMAIN = {
    "version": "3.1",
    "intents": ["dispute", "transfer", "greet", "freeze"],
    "entities": ["amount", "merchant", "card_last_four", {"account_type": {"roles": ["from", "to"]}}],
}


def markup(text, annotations):
    """Rasa YAML example markup for `text` and its annotations."""
    out, cursor = "", 0
    for a in sorted(annotations, key=lambda a: a["start"]):
        label = {"entity": a["entity"], **({"role": a["role"]} if a.get("role") else {})}
        tag = f"({a['entity']})" if len(label) == 1 else json.dumps(label)
        out += text[cursor:a["start"]] + f"[{text[a['start']:a['end']]}]" + tag
        cursor = a["end"]
    return out + text[cursor:]


def write_project(folder: Path, pipeline, nlu_extra: str = "") -> Path:
    labels, texts, entities = synthetic(30, seed=5)
    blocks = {}
    for label, text, annotations in zip(labels, texts, entities):
        blocks.setdefault(label, []).append(markup(text, annotations))
    blocks["freeze"] = [f"freeze my card ending [{n}](card_last_four)" for n in ("1234", "9876", "4455", "0012", "7777", "3141")]
    nlu = 'version: "3.1"\nnlu:\n'
    for label, examples in blocks.items():
        nlu += f"- intent: {label}\n  examples: |\n" + "".join(f"    - {e}\n" for e in sorted(set(examples)))
    nlu += ('- synonym: savings\n  examples: |\n    - isa\n'
            '- regex: card_last_four\n  examples: |\n    - \\b\\d{4}\\b\n') + nlu_extra
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "nlu.yml").write_text(nlu, encoding="utf-8")
    (folder / "domain.yml").write_text(yaml.safe_dump(DOMAIN), encoding="utf-8")
    config = {"recipe": "default.v1", "language": "en", "assistant_id": "entity-test",
              "importers": [{"name": "nlu.importer.CheckedFileImporter"}], "pipeline": pipeline}
    (folder / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return folder


PIPELINE = [
    {"name": "WhitespaceTokenizer"},
    {"name": "RegexEntityExtractor", "use_regexes": True},
    {"name": "nlu.TransformerIntentClassifier", **TINY},
    {"name": "EntitySynonymMapper"},
]


def train(folder: Path) -> str:
    from rasa.model_training import train_nlu

    return train_nlu(str(folder / "config.yml"), str(folder / "data"), str(folder / "models"),
                     domain=str(folder / "domain.yml"))


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    from rasa.core.agent import Agent

    folder = write_project(tmp_path_factory.mktemp("entities"), PIPELINE)
    return Agent.load(train(folder))


def parse(agent, text):
    return asyncio.run(agent.parse_message(text))


def test_entities_come_out_in_rasas_format_with_roles(agent):
    result = parse(agent, "please move £250 from my joint to my savings account")
    assert result["intent"]["name"] == "transfer"
    ours = [e for e in result["entities"] if e["extractor"] == "TransformerIntentClassifier"]
    assert {(e["entity"], e.get("role"), e["value"]) for e in ours} >= {("amount", None, "£250")}
    for entity in ours:
        assert set(entity) >= {"entity", "start", "end", "value", "confidence_entity", "extractor"}
        assert result["text"][entity["start"]:entity["end"]] == entity["value"]
        assert 0.0 < entity["confidence_entity"] <= 1.0
    accounts = {e.get("role"): e["value"] for e in ours if e["entity"] == "account_type"}
    assert accounts.get("from") == "joint" or accounts.get("to") == "savings", ours


def test_it_works_beside_the_regex_extractor_and_the_synonym_mapper(agent):
    result = parse(agent, "freeze my card ending 4242")
    assert result["intent"]["name"] == "freeze"
    assert ("card_last_four", "4242", "RegexEntityExtractor") in {(e["entity"], e["value"], e["extractor"]) for e in result["entities"]}
    mapped = parse(agent, "transfer £20 from isa into current")
    [source] = [e for e in mapped["entities"] if e["start"] == mapped["text"].index("isa")]
    assert source["entity"] == "account_type" and source["value"] == "savings"  # found by us, mapped by Rasa's mapper
    assert source["extractor"] == "TransformerIntentClassifier" and "EntitySynonymMapper" in source["processors"]


def test_messages_without_entities_get_none_and_odd_text_does_not_break_it(agent):
    for text in ["hello there", "", "🙂" * 300, "a" * 5000, "\x00\x07"]:
        result = parse(agent, text)
        assert all(e["extractor"] != "TransformerIntentClassifier" or e["value"].strip() for e in result["entities"])


@pytest.mark.parametrize("extra, where, message", [
    ("- intent: greet\n  examples: |\n    - hi\n    - [Amazon](shop) charged me\n", "nlu.yml:", "unknown entity type 'shop'"),
    ('- intent: transfer\n  examples: |\n    - move [£5](amount) from [savings]{"entity": "account_type", "role": "sideways"}\n',
     "nlu.yml:", "role 'sideways'"),
])
def test_rasa_train_refuses_a_broken_annotation_naming_file_line_and_example(tmp_path, extra, where, message):
    folder = write_project(tmp_path, PIPELINE, nlu_extra=extra)
    lines = (folder / "data" / "nlu.yml").read_text().split("\n")
    bad_line = next(n for n, line in enumerate(lines, start=1) if "shop" in line or "sideways" in line)
    with pytest.raises(InvalidNLUData, match=message) as error:
        train(folder)
    assert f"nlu.yml:{bad_line}:" in str(error.value)
    assert not list((folder / "models").glob("*.tar.gz")) if (folder / "models").exists() else True


def test_json_nlu_files_are_checked_for_spans_and_overlaps(tmp_path):
    import json

    path = tmp_path / "nlu.json"
    examples = [{"text": "pay £50 to Tesco", "intent": "dispute",
                 "entities": [{"entity": "amount", "start": 4, "end": 7, "value": "£50"},
                              {"entity": "merchant", "start": 5, "end": 16, "value": "50 to Tesco"}]}]
    path.write_text(json.dumps({"rasa_nlu_data": {"common_examples": examples}}, indent=2), encoding="utf-8")
    with pytest.raises(ValueError, match=r"nlu.json:\d+: entities .* overlap"):
        check_nlu_file(path, {"amount", "merchant"})
    examples[0]["entities"] = [{"entity": "amount", "start": 4, "end": 70, "value": "£50"}]
    path.write_text(json.dumps({"rasa_nlu_data": {"common_examples": examples}}, indent=2), encoding="utf-8")
    with pytest.raises(ValueError, match="outside the example"):
        check_nlu_file(path, {"amount"})
    (tmp_path / "broken.yml").write_text("nlu: [\n", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.yml: not valid YAML"):
        check_nlu_file(tmp_path / "broken.yml")


def test_the_importer_is_rasas_file_importer():
    from rasa.shared.importers.rasa import RasaFileImporter

    assert issubclass(CheckedFileImporter, RasaFileImporter)


def test_each_parse_carries_the_unknown_request_verdict(agent):
    known, odd = parse(agent, "move £20 from my savings to my joint account"), parse(agent, "what is the capital of mongolia")
    assert known["open_intent"]["unknown"] is False and known["intent"]["name"] == "transfer"
    assert odd["open_intent"]["unknown"] is True and odd["open_intent"]["score"] > odd["open_intent"]["threshold"]
    assert odd["intent"]["name"] != "nlu_fallback"  # unknown_intent unset: only reported


def test_unknown_intent_turns_an_unknown_request_into_the_fallback_intent(tmp_path):
    from rasa.core.agent import Agent

    pipeline = [{"name": "nlu.TransformerIntentClassifier", **TINY, "unknown_intent": "nlu_fallback"}]
    agent = Agent.load(train(write_project(tmp_path, pipeline)))
    odd = parse(agent, "what is the capital of mongolia")
    assert odd["intent"]["name"] == "nlu_fallback" and odd["intent_ranking"][0]["name"] == "nlu_fallback"
    assert odd["intent_ranking"][1]["name"] in DOMAIN["intents"]
    assert parse(agent, "move £20 from my savings to my joint account")["intent"]["name"] == "transfer"


def test_without_the_importer_the_component_refuses_a_broken_example_by_number_and_intent(tmp_path):
    from rasa.engine.graph import ExecutionContext
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData

    from nlu import TransformerIntentClassifier
    from nlu.entities import EntityAnnotationError

    data = TrainingData([
        Message(data={"text": "hello", "intent": "greet"}),
        Message(data={"text": "pay £50 to Tesco", "intent": "dispute",
                      "entities": [{"entity": "amount", "start": 4, "end": 7, "value": "£50"},
                                   {"entity": "merchant", "start": 6, "end": 16, "value": "0 to Tesco"}]}),
    ])
    config = {**TransformerIntentClassifier.get_default_config(), **TINY}
    component = TransformerIntentClassifier.create(config, LocalModelStorage(tmp_path), Resource("intent"),
                                                   ExecutionContext(graph_schema=None, model_id="test"))
    with pytest.raises(EntityAnnotationError, match=r"NLU example 2 \(intent 'dispute'\).*overlap"):
        component.train(data)
    assert not list(tmp_path.rglob("*.safetensors"))


def test_entities_need_a_tokenizer_that_reports_offsets():
    from nlu.model import IntentModel, IntentModelConfig, IntentModelError

    class SlowTokenizer:
        is_fast = False

    model = IntentModel(IntentModelConfig(device="cpu"), ["a", "b"], None, SlowTokenizer(), None)
    with pytest.raises(IntentModelError, match="fast.*SlowTokenizer"):
        model._tokenize_spans(["pay £50"])
