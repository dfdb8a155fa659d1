"""`core.language`: the configured language, and words that compare messages in any script."""
from __future__ import annotations

import random
import re
import string

import pytest

from core.language import LanguageConfigError, configured_language, is_english, word_overlap, words
from core.settings import PROJECT_ROOT
from retrieval.ingest import question_words


def test_on_ascii_text_words_are_what_the_english_tokeniser_gave():
    """Turns in English compare exactly as before: ``[a-z0-9']+`` on lower-cased text."""
    rng = random.Random(15)
    texts = ["My card hasn't arrived, it's been 2 weeks!!", "'quoted' under_score e-mail", ""]
    texts += ["".join(rng.choice(string.printable) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    for text in texts:
        assert words(text) == re.findall(r"[a-z0-9']+", text.lower()), text


@pytest.mark.parametrize("text, expected", [
    ("我的卡丢了，怎么办？", ["我的", "的卡", "卡丢", "丢了", "怎么", "么办"]),  # character bigrams per run
    ("卡", ["卡"]),
    ("我的card丢了", ["我的", "card", "丢了"]),  # Latin and Chinese written together
    ("ＡＴＭ吞了我的卡 １２３４", ["atm", "吞了", "了我", "我的", "的卡", "1234"]),  # full width: NFKC
    ("🙂🙂 卡呢？", ["卡呢"]),
    ("カードが届かない", ["カー", "ード", "ドが", "が届", "届か", "かな", "ない"]),
    ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # combining vowel signs stay in their word
    ("Straße CAFÉ", ["strasse", "café"]),
])
def test_words_in_other_scripts(text, expected):
    assert words(text) == expected


def test_word_overlap_compares_chinese_messages():
    assert word_overlap("我的卡丢了怎么办", "我的卡丢了，怎么办？") == pytest.approx(6 / 7)
    assert word_overlap("我的卡丢了", "汇率是多少") == 0.0
    assert word_overlap("", "我的卡") == 0.0


def test_question_words_count_pieces_between_spaces_or_chinese_bigrams():
    assert question_words("how do I top-up?") == 4  # as before: pieces between spaces
    assert question_words("卡丢了") == 2 and question_words("我的卡丢了") == 4


def test_the_project_language_is_read_from_config_yml():
    assert configured_language() == "en"
    assert "language: en" in (PROJECT_ROOT / "config.yml").read_text()


def test_another_config_file_and_its_errors(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("recipe: default.v1\nlanguage: zh\npipeline: []\n")
    assert configured_language(config) == "zh"
    config.write_text("recipe: default.v1\npipeline: []\n")
    assert configured_language(config) == "en"  # no key: English
    for bad in ("language: [zh]\n", "language: 'zh cn'\n", "language: : :\n"):
        config.write_text(bad)
        with pytest.raises(LanguageConfigError, match=re.escape(str(config))):
            configured_language(config)
    with pytest.raises(LanguageConfigError, match="missing.yml"):
        configured_language(tmp_path / "missing.yml")


@pytest.mark.parametrize("language, english", [("en", True), ("en-GB", True), ("en_US", True), ("EN", True),
                                               ("zh", False), ("zh-Hans", False), ("", False), (None, False)])
def test_is_english(language, english):
    assert is_english(language) is english
