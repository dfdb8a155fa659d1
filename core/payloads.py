"""Button payloads: the one test of "did a button send this, or did a customer type it?".

A button sends ``/intent`` or ``/intent{json}``, the form Rasa's own payload
reader (`RegexMessageHandler`) takes. Every part that must tell a payload
from typed text (NLU, retrieval, model prefetch, redaction, channels,
actions, analytics) asks here, so they all agree.
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, Optional, Tuple

# "/intent" or "/intent{json}"; surrounding white space is ignored.
PAYLOAD = re.compile(r"^/(?P<intent>[^{@\s]+)(?P<entities>\{.*\})?\s*$", re.DOTALL)


def parse_payload(text: Optional[str]) -> Optional[Tuple[str, Dict[str, Any]]]:
    """Split a button payload into its intent and entity values.

    Returns None when `text` is not a payload (ordinary customer text). A
    payload whose JSON part is broken keeps its intent with no values.
    """
    match = PAYLOAD.match((text or "").strip())
    if not match:
        return None
    values: Dict[str, Any] = {}
    if match.group("entities"):
        try:
            loaded = json.loads(match.group("entities"))
            values = loaded if isinstance(loaded, dict) else {}
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's JSON reader goes
            values = {}
    return match.group("intent"), values


def is_payload(text: Optional[str]) -> bool:
    """Whether `text` is a button payload rather than something a customer typed."""
    return bool(text) and PAYLOAD.match(text.strip()) is not None
