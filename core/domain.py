"""What the Rasa domain (bot/domain/, a folder of yml files) declares, read without Rasa.

The action server and the offline scripts need the intent list or a
response's text without loading a trained model; this is the one reader.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Union

import yaml

from core.settings import PROJECT_ROOT

DOMAIN_DIR = PROJECT_ROOT / "bot" / "domain"


def _documents(domain: Union[str, Path]) -> Iterator[dict]:
    domain = Path(domain)
    for path in sorted(domain.glob("*.yml")) if domain.is_dir() else [domain]:
        yield yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def domain_intents(domain: Union[str, Path] = DOMAIN_DIR) -> List[str]:
    """The intents the domain (a file or a folder of yml files) declares, in file order."""
    intents: List[str] = []
    for content in _documents(domain):
        for entry in content.get("intents") or []:
            intents.append(next(iter(entry)) if isinstance(entry, dict) else str(entry))
    return intents


def response_text(name: str, domain: Union[str, Path] = DOMAIN_DIR) -> Optional[str]:
    """The text of the first variant of response `name` that has one, or None."""
    for content in _documents(domain):
        for variant in (content.get("responses") or {}).get(name) or []:
            if isinstance(variant, dict) and variant.get("text"):
                return str(variant["text"])
    return None
