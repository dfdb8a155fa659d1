"""The language the assistant serves, and comparing customer messages in any language.

`configured_language` reads ``language:`` from the Rasa config (config.yml at
the project root). English-only parts (the frustration word lists and the
English labelled examples and sentiment model, `nlu.FrustrationReader`) ask
`is_english` before they run.

`words` splits a message into the words two messages are compared by (asking
again, `word_overlap`) in any script: NFKC-normalised (full-width letters and
digits become ASCII) and case-folded; letters, digits, combining marks and
apostrophes make a word; Chinese characters and Japanese kana, written
without spaces, give their character bigrams ("我的卡丢了" -> 我的, 的卡, 卡丢,
丢了), the usual way to compare such text without a dictionary. On ASCII text
it gives what ``re.findall(r"[a-z0-9']+", text.lower())`` gives.
"""
from __future__ import annotations

import itertools
import os
import re
import unicodedata
from pathlib import Path
from typing import List, Optional

import yaml

from core.settings import PROJECT_ROOT

ENGLISH = "en"
RASA_CONFIG = PROJECT_ROOT / "config.yml"
# Scripts written without spaces between words, compared by character bigrams: CJK ideographs
# (with their extensions and compatibility block), the iteration marks 々〆〇, hiragana, katakana.
CJK = "\u3005-\u3007\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
CJK_RUN = re.compile(f"[{CJK}]+")  # a run of those characters
_LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")
_WORD, _BIGRAMS = 1, 2


class LanguageConfigError(ValueError):
    """The Rasa config's ``language:`` cannot be read."""


def configured_language(config: Optional[os.PathLike] = None) -> str:
    """The ``language:`` of the Rasa config file (config.yml at the project root unless `config`), e.g. "en".

    A file without the key gives "en". Raises `LanguageConfigError` naming the
    file when it is missing, is not YAML, or its ``language`` is not a word.
    """
    path = Path(config or RASA_CONFIG)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LanguageConfigError(f"{path}: cannot read the Rasa config for its `language:` ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise LanguageConfigError(f"{path}: not valid YAML, so its `language:` cannot be read ({exc})") from exc
    language = (loaded or {}).get("language") if isinstance(loaded, dict) else None
    if language is None:
        return ENGLISH
    if not isinstance(language, str) or not _LANGUAGE_CODE.fullmatch(language.strip()):
        raise LanguageConfigError(f"{path}: `language: {language!r}` is not a language code such as en or zh")
    return language.strip()


def is_english(language: Optional[str]) -> bool:
    """Whether `language` ("en", "en-GB", "en_US", ...) is English."""
    return (language or "").strip().lower().replace("_", "-").split("-")[0] == ENGLISH


def _kind(ch: str) -> int:
    """_BIGRAMS for CJK characters, _WORD for the rest of a word, 0 between words."""
    if ch.isascii():
        return _WORD if ch.isalnum() or ch == "'" else 0
    if CJK_RUN.match(ch):
        return _BIGRAMS
    if ch.isalnum() or unicodedata.category(ch).startswith("M"):  # marks: Devanagari, Thai vowel signs
        return _WORD
    return 0


def words(text: Optional[str]) -> List[str]:
    """The words of `text` for comparing messages (see the module's docstring), in order."""
    found: List[str] = []
    for kind, group in itertools.groupby(unicodedata.normalize("NFKC", text or "").casefold(), _kind):
        if kind == _WORD:
            found.append("".join(group))
        elif kind == _BIGRAMS:
            run = "".join(group)
            found.extend([run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)])
    return found


def word_overlap(a: Optional[str], b: Optional[str]) -> float:
    """Shared words over all words of the two texts (Jaccard of their `words`; 0 when either has none)."""
    ta, tb = set(words(a)), set(words(b))
    return len(ta & tb) / len(ta | tb) if ta and tb else 0.0
