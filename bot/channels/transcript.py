"""A conversation as people read it: who said what, with buttons resolved.

Used by the web widget to restore a conversation after a page reload and by
the agent inbox to show the full transcript. Button presses appear as the
button's title ("Show me savings accounts"), ratings are attached to the
answer they rate instead of appearing as messages.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

from rasa.shared.core.events import (
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    UserUttered,
)

from bot.channels.replies import RATE_ANSWER, BotReply, parse_payload


def _button_title(payload: str, offered: Dict[str, str]) -> Optional[str]:
    return offered.get(payload)


def transcript(events: Iterable[Event], limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """The messages of a conversation, oldest first (the last `limit` when given).

    Each entry has ``sender`` ("customer", "assistant", "agent" or "system"),
    ``text`` and ``timestamp``; assistant and agent entries carry the widget
    fields of `BotReply.as_widget_event` (buttons, rating, ...), a rated
    answer carries ``rated`` ("up"/"down"), and customer entries carry the
    ``intent`` NLU gave them and whether they were a button press.
    """
    entries: List[Dict[str, Any]] = []
    offered: Dict[str, str] = {}  # payload -> title of buttons shown so far
    rated: Dict[str, Dict[str, Any]] = {}  # answer_id -> the entry that carried its rating
    for event in events:
        if isinstance(event, BotUttered):
            message = event.message()
            reply = BotReply.from_message(message)
            if reply.is_empty:
                continue
            for button in (*reply.buttons, *reply.quick_replies):
                offered[button.payload] = button.title
            entry = reply.as_widget_event(timestamp=event.timestamp)
            entry["sender"] = "agent" if reply.agent else ("system" if reply.notice else "assistant")
            if reply.rating:
                rated[reply.rating.answer_id] = entry
            entries.append(entry)
        elif isinstance(event, UserUttered):
            text = event.text or ""
            parsed = parse_payload(text)
            if parsed and parsed[0] == RATE_ANSWER:
                answer = rated.get(str(parsed[1].get("answer_id", "")))
                if answer is not None and parsed[1].get("rating") in ("up", "down"):
                    answer["rated"] = parsed[1]["rating"]
                continue
            entry = {
                "sender": "customer",
                "text": _button_title(text, offered) or text if parsed else text,
                "timestamp": event.timestamp,
                "intent": (event.intent or {}).get("name"),
                "button": bool(parsed),
            }
            entries.append(entry)
        elif isinstance(event, (ConversationPaused, ConversationResumed)):
            continue
    return entries[-limit:] if limit else entries
