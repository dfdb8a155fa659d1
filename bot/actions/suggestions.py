"""Suggestion buttons for an answer (placeholder).

The recommender's engineer replaces this module; until then no suggestion is
ever offered.
"""
from typing import Any, Dict, List


def suggestion_buttons(tracker: Any, topic: str) -> List[Dict[str, str]]:
    """Buttons suggesting items for this customer after an answer on `topic`; none yet."""
    return []
