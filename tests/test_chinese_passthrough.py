"""Chinese text, mixed Chinese and English, full-width digits and emoji through everything that reads what a customer types.

- the NLU pipeline of config.yml as Rasa trains and runs it (every component
  named there; the intent classifier trained tiny on English and Chinese
  examples), with ``language: zh``, over an answer index built by
  ``training.build_index`` from a Chinese history;
- every custom action the action server registers (Rasa SDK's own
  `ActionExecutor` over ``bot.actions``), with Chinese latest messages,
  entities and slots, on a temporary database;
- the handoff policy's comparison of turns.

Nothing may raise, and Chinese text must reach the parse data and the
database unchanged.
"""
from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
import sqlalchemy as sa
import yaml

from core.settings import PROJECT_ROOT
from training.intent_data import read_examples

FIXTURE = Path(__file__).parent / "fixtures" / "intents_tiny.csv"
TINY = dict(epochs=3, trainable_layers=1, max_length=24, batch_size=8, validation_split=0.2, patience=5, device="cpu")
CHINESE_EXAMPLES = {
    "lost_card": ["我的卡丢了", "我的银行卡被偷了", "找不到我的借记卡了", "尾号[1234](card_last_four)的卡丢了"],
    "card_arrival": ["我的新卡什么时候到", "新卡还没有寄到", "卡片一直没收到", "我的card还没到"],
    "exchange_rate": ["今天的汇率是多少", "欧元兑人民币的汇率", "换美元划算吗", "汇率怎么算"],
    "greet": ["你好", "您好", "早上好", "嗨，在吗"],
}
HISTORY = [
    {"id": "zh-lost", "question": "我的银行卡丢了怎么办？", "answer": "请立即在应用里冻结卡片，并申请补办新卡。", "tags": ["cards"]},
    {"id": "zh-arrival", "question": "新卡寄出后多久能收到？", "answer": "新卡一般在五个工作日内寄到。", "tags": ["card_arrival"]},
    {"id": "zh-rate", "question": "今天欧元兑人民币的汇率是多少？", "answer": "汇率以应用中显示的实时汇率为准。", "tags": ["exchange_rate"]},
    {"id": "zh-fee", "question": "境外取现收手续费吗？", "answer": "每月前两百英镑的境外取现免手续费。", "tags": ["cash_withdrawal_fee"]},
    {"id": "zh-wallet", "question": "我的Apple Pay绑不上卡", "answer": "请在钱包应用中重新添加卡片。", "tags": ["mobile_wallet"]},
    {"id": "zh-card-number", "question": "我的卡号是４５３９１４８８０３４３６４６７，请帮我冻结", "answer": "已为您冻结，请勿在聊天中发送卡号。"},
]
TRANSCRIPT = "# conversation: zh-1\nCustomer: 你好\nAgent: 您好，请问有什么可以帮您？\nCustomer: 我想注销我的账户\nAgent: 您可以在应用的账户设置里注销账户。\n"
MESSAGES = [
    "我的卡丢了，怎么办？",
    "我的银行卡丢了怎么办",  # near the history's question
    "請問今天的匯率是多少",  # traditional characters
    "我的card还没到，ATM吞卡了",
    "我的卡尾号是１２３４",
    "你们的服务太差了！！！",
    "🙂🙂 卡呢？？",
    "カードが届かない",
    "\u3000",  # an ideographic space only
    "卡" * 3000,
]


# ------------------------------------------------------------------ the NLU pipeline of config.yml


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    """The answer index `training.build_index` writes from a Chinese history (Q/A file and a transcript)."""
    from training import build_index

    folder = tmp_path_factory.mktemp("zh-history")
    (folder / "qa.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in HISTORY), encoding="utf-8")
    (folder / "desk.txt").write_text(TRANSCRIPT, encoding="utf-8")
    out = folder / "index"
    assert build_index.main([str(folder), "--out", str(out)]) == 0
    return out


def test_a_chinese_history_is_read_whole_and_redacted_without_touching_the_chinese(index_dir):
    from retrieval import AnswerIndex

    records = {r.id: r for r in AnswerIndex.load(index_dir).records()}
    assert set(HISTORY[i]["id"] for i in range(len(HISTORY))) <= set(records)  # none "too short", none merged
    assert records["zh-lost"].question == HISTORY[0]["question"] and records["zh-lost"].answer == HISTORY[0]["answer"]
    assert records["zh-card-number"].question == "我的卡号是[CARD]，请帮我冻结"
    [from_transcript] = [r for r in records.values() if "transcript" in r.tags]  # "你好" (one bigram) is too short
    assert (from_transcript.question, from_transcript.answer) == ("我想注销我的账户", "您可以在应用的账户设置里注销账户。")


def _nlu_yaml() -> str:
    texts, labels, _ = read_examples(FIXTURE)
    blocks: Dict[str, List[str]] = {}
    for text, label in zip(texts, labels):
        blocks.setdefault(label, []).append(text)
    for label, examples in CHINESE_EXAMPLES.items():
        blocks[label] += examples
    return 'version: "3.1"\nnlu:\n' + "".join(
        f"- intent: {label}\n  examples: |\n" + "".join(f"    - {e}\n" for e in examples) for label, examples in blocks.items())


def _pipeline(index: Path, database_url: str) -> List[Dict[str, Any]]:
    """config.yml's pipeline, with a tiny training, the test index and database; nothing else changed."""
    project = yaml.safe_load((PROJECT_ROOT / "config.yml").read_text(encoding="utf-8"))
    pipeline = copy.deepcopy(project["pipeline"])
    for component in pipeline:
        if component["name"] == "nlu.TransformerIntentClassifier":
            component.update(TINY)
        elif component["name"] == "retrieval.AnswerRetriever":
            component.update(index_dir=str(index), database_url=database_url)
    return pipeline


@pytest.fixture(scope="module")
def project(tmp_path_factory, index_dir):
    """A Chinese copy of the project's NLU: config.yml with ``language: zh``, trained with `rasa train nlu`, loaded as Rasa serves it.

    The frustration reader follows that file's ``language:`` (it reads the
    Rasa config at the project root, here pointed at this one).
    """
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu

    folder = tmp_path_factory.mktemp("zh-project")
    database_url = f"sqlite:///{folder / 'assistant.db'}"
    project_config = yaml.safe_load((PROJECT_ROOT / "config.yml").read_text(encoding="utf-8"))
    config = {key: value for key, value in project_config.items() if key not in ("pipeline", "policies")}
    config.update(language="zh", pipeline=_pipeline(index_dir, database_url))
    (folder / "config.yml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (folder / "nlu.yml").write_text(_nlu_yaml(), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("core.language.RASA_CONFIG", folder / "config.yml")
        model = train_nlu(str(folder / "config.yml"), str(folder / "nlu.yml"), str(folder / "models"))
        agent = Agent.load(model)
        yield agent, config


def parse(agent, text: str) -> Dict[str, Any]:
    return asyncio.run(agent.parse_message(text))


def test_every_component_of_config_yml_is_in_the_chinese_model(project):
    agent, config = project
    served = {node.uses.__name__ for node in agent.processor.model_metadata.predict_schema.nodes.values()}
    assert {c["name"].rsplit(".", 1)[-1] for c in config["pipeline"]} <= served


@pytest.mark.parametrize("text", MESSAGES)
def test_chinese_messages_parse_through_the_whole_pipeline(project, text):
    agent, _ = project
    parsed = parse(agent, text)

    assert parsed["text"] == text.strip()  # nothing rewrote the words (Rasa strips surrounding white space)
    assert isinstance(parsed["entities"], list)
    intents = set(CHINESE_EXAMPLES) | {"nlu_fallback", "frustrated"}
    assert parsed["intent"]["name"] in intents and 0.0 <= parsed["intent"]["confidence"] <= 1.0
    assert {r["name"] for r in parsed["intent_ranking"]} <= intents
    if text.strip():
        hits = parsed["retrieval"]["hits"]
        assert hits and all(h["answer"] in {r["answer"] for r in HISTORY} | {"您可以在应用的账户设置里注销账户。"} for h in hits)
        reading = parsed["frustration"]
        assert reading["sentiment"] is None  # the sentiment model is English: not used for zh
        assert set(reading["signals"]) <= {"shouting", "punctuation"}  # no English word list, no English examples


def test_a_chinese_question_finds_its_past_answer_and_chinese_bursts_of_punctuation_count(project):
    agent, _ = project
    assert parse(agent, "我的银行卡丢了，怎么办")["retrieval"]["hits"][0]["id"] == "zh-lost"
    assert parse(agent, "你们的服务太差了！！！")["frustration"]["evidence"] == ["！！！"]


def test_english_words_of_frustration_count_only_where_the_language_is_english(project):
    from rasa.engine.storage.resource import Resource

    from nlu.frustration_reader import FrustrationReader

    agent, _ = project
    assert "lexicon" not in parse(agent, "this is useless, 真没用")["frustration"]["signals"]

    def reading(language):
        config = {"use_encoder": False, "language": language}
        reader = FrustrationReader.create(config, None, Resource(f"reader-{language}"), None)
        return reader.read("this is useless, 真没用")

    assert reading("en")["signals"] == {"lexicon": 1.0} and reading("zh")["signals"] == {}


def test_in_another_language_capitals_and_bursts_still_count():
    from nlu.frustration import FrustrationDetector

    detector = FrustrationDetector(language="zh")
    assert detector.assess("ПОЧЕМУ КАРТА НЕ РАБОТАЕТ").signals == {"shouting": 1.0}  # Cyrillic has capitals
    assert detector.assess("我的PIN和ATM都不行").signals == {}  # banking acronyms, not shouting
    assert detector.assess("为什么？！").signals == {"punctuation": 0.5}
    assert detector.assess("this is useless, stop it!!").signals == {"punctuation": 0.5}  # no English word list


def test_the_english_typed_shortcuts_need_their_english_words():
    from bot.handoff.desk import STOP_WAITING
    from core.satisfaction import NO_MORE_QUESTIONS

    assert NO_MORE_QUESTIONS.search("that's all, thanks") and not NO_MORE_QUESTIONS.search("没有别的问题了，谢谢")
    assert STOP_WAITING.search("I don't want to wait") and not STOP_WAITING.search("我不想等了")


def test_the_bundled_english_examples_do_not_judge_chinese_text():
    """To the English encoder many Chinese questions read like "stupid bot": the English examples leave them alone."""
    from core.encoder import load_encoder
    from nlu.frustration import FrustrationDetector

    detector = FrustrationDetector(encoder=load_encoder(None))
    for text in ("请问汇率是多少", "退款什么时候到账", "怎么修改密码"):
        assert detector.assess(text).signals == {}, text
    assert "similar" in detector.assess("this bot is a joke, nothing ever works").signals


# ------------------------------------------------------------------ the custom actions


ENTITY_VALUES = {"answer_id": "history:zh-lost", "rating": "down", "score": "五", "card_last_four": "１２３４",
                 "amount": "五十英镑", "date": "上周五", "merchant": "星巴克", "account_type": "储蓄账户", "item_id": "中文商品"}
INTENT_FOR = {"action_answer_intent": "card_arrival", "action_handoff": "frustrated", "action_rate_answer": "rate_answer"}
EARLIER = "我的银行卡丢了怎么办"
LATEST = "我的卡尾号是１２３４，服务太差了！！ 🙂"


@pytest.fixture(scope="module")
def domain() -> Dict[str, Any]:
    """The domain as the action server receives it."""
    from rasa.shared.core.domain import Domain

    return Domain.load(str(PROJECT_ROOT / "bot" / "domain")).as_dict()


@pytest.fixture(scope="module")
def executor():
    """The action server's registry: every action Rasa SDK finds in ``bot.actions``."""
    from rasa_sdk.executor import ActionExecutor

    registry = ActionExecutor()
    registry.register_package("bot.actions")
    return registry


def _our_actions() -> List[str]:
    from rasa_sdk.executor import ActionExecutor

    registry = ActionExecutor()
    registry.register_package("bot.actions")
    return sorted(name for name, run in registry.actions.items()
                  if getattr(run, "__self__", None).__class__.__module__.startswith("bot.actions"))


@pytest.fixture()
def stores(tmp_path, monkeypatch):
    """The project database, recommender folder, tracker file, ratings spool and exports under tmp_path."""
    from bot.actions import history, suggestions
    from bot.insight import experiments
    from bot.privacy import export
    from bot.security import identity
    from core import db
    from core.settings import get_settings

    url = f"sqlite:///{tmp_path / 'assistant.db'}"
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", url)
    monkeypatch.setenv("ASSISTANT_RECOMMENDER_DIR", str(tmp_path / "recommender"))  # none: the catalogue's
    monkeypatch.setenv("ASSISTANT_TRACKER_DB", str(tmp_path / "tracker.db"))
    monkeypatch.setattr(history, "UNSAVED_RATINGS", tmp_path / "unsaved_ratings.jsonl")
    monkeypatch.setattr(export, "EXPORT_DIR", tmp_path / "exports")
    get_settings.cache_clear()
    db.connect.cache_clear()
    identity.clear_cache()
    experiments.reset_experiments()
    suggestions.use_recommender(None)
    yield db.connect(url)
    suggestions.use_recommender(None)
    experiments.reset_experiments()
    get_settings.cache_clear()
    db.connect.cache_clear()


def _action_call(action: str, domain: Dict[str, Any]) -> Dict[str, Any]:
    """What the Rasa server sends the action server for `action`, with a Chinese conversation."""
    names = [e if isinstance(e, str) else next(iter(e)) for e in domain.get("entities", [])]  # {name: {roles}}
    entities = [{"entity": name, "value": ENTITY_VALUES.get(name, "中文值"), "start": 0, "end": 3} for name in names]
    hit = {"id": "zh-lost", "question": HISTORY[0]["question"], "answer": HISTORY[0]["answer"], "score": 0.93,
           "source": "qa.jsonl", "tags": ["cards"]}
    latest = {"text": LATEST, "intent": {"name": INTENT_FOR.get(action, "nlu_fallback"), "confidence": 0.42},
              "entities": entities, "retrieval": {"hits": [hit], "best_score": 0.93},
              "frustration": {"frustrated": True, "score": 1.0, "signals": {"punctuation": 1.0},
                              "evidence": ["！！"], "sentiment": None}}
    buttons = [{"title": "👍", "payload": '/rate_answer{"answer_id":"history:zh-lost","rating":"up"}'}]
    events = [{"event": "user", "text": EARLIER, "parse_data": {"intent": {"name": "lost_card"}, "text": EARLIER}},
              {"event": "bot", "text": HISTORY[0]["answer"], "data": {"buttons": buttons}},
              {"event": "user", "text": LATEST, "parse_data": latest, "input_channel": "rest", "metadata": {}}]
    active_loop: Dict[str, Any] = {}
    form = action[len("validate_"):] if action.startswith("validate_") else None
    if form in domain.get("forms", {}):  # the form asks its slots; each gets a Chinese value to validate
        active_loop = {"name": form}
        events += [{"event": "slot", "name": slot, "value": LATEST} for slot in domain["forms"][form]["required_slots"]]
    return {"next_action": action, "sender_id": "rest:zh", "domain": domain, "version": "3.6.21",
            "tracker": {"sender_id": "rest:zh", "slots": {}, "latest_message": latest, "events": events, "paused": False,
                        "followup_action": None, "active_loop": active_loop, "latest_action_name": "action_listen"}}


@pytest.mark.parametrize("action", _our_actions())
def test_every_custom_action_runs_on_a_chinese_conversation(action, executor, domain, stores):
    response = asyncio.run(executor.run(_action_call(action, domain)))

    assert isinstance(response["events"], list)
    said = [m.get("response") for m in response["responses"]]
    assert all(r is None or r in domain["responses"] for r in said), said
    assert not [r for r in said if r and r.endswith(("_failed", "_unavailable", "_not_saved"))], said  # storage took it


def test_chinese_text_is_stored_as_typed(executor, domain, stores):
    from core import db

    asyncio.run(executor.run(_action_call("action_rate_answer", domain)))  # rating "down": kept with the question
    asyncio.run(executor.run(_action_call("action_handoff", domain)))
    with stores.connect() as conn:
        [rating] = conn.execute(sa.select(db.answer_ratings)).mappings().all()
        [handoff] = conn.execute(sa.select(db.handoffs)).mappings().all()
        queued = {r["reason"]: r["text"] for r in conn.execute(sa.select(db.review_queue)).mappings()}
    assert rating["query"] == EARLIER and queued["thumbs_down"] == EARLIER
    assert queued["handoff"] == LATEST  # redacted, and a card's last four is not personal data
    assert handoff["summary"] == "frustration: ！！"


# ------------------------------------------------------------------ the handoff policy


def test_the_handoff_policy_hears_a_chinese_customer_ask_again(tmp_path):
    from rasa.engine.graph import ExecutionContext, GraphSchema
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, SlotSet

    from bot.policies import HandoffPolicy
    from tests.test_handoff_policy import predicted, said, tracker_of

    rasa_domain = Domain.load(str(PROJECT_ROOT / "bot" / "domain"))
    policy = HandoffPolicy.create({}, LocalModelStorage(tmp_path), Resource("handoff"), ExecutionContext(GraphSchema({}), "t"))
    answered = ActionExecuted("action_answer_intent")

    again = tracker_of(rasa_domain, said("我的新卡什么时候到", "card_arrival"), answered, said("我的新卡什么时候到？？", "card_arrival"))
    other = tracker_of(rasa_domain, said("我的新卡什么时候到", "card_arrival"), answered, said("今天的汇率是多少", "exchange_rate"))
    short = tracker_of(rasa_domain, said("卡呢", "card_arrival"), answered, said("卡呢", "card_arrival"))  # too short to count

    assert predicted(policy, again, rasa_domain) == ("action_handoff", [SlotSet("handoff_reason", "frustration")])
    assert predicted(policy, other, rasa_domain) == (None, [])
    assert predicted(policy, short, rasa_domain) == (None, [])
