"""What a bot message means to a channel, whatever channel draws it.

Rasa hands every output channel the same message dictionary (``text``,
``buttons``, ``quick_replies``, ``image``, ``custom`` and, for a human
agent's message, ``agent``). `BotReply.from_message` reads it once and
separates the three kinds of buttons the assistant sends:

- rating buttons (payload ``/rate_answer{"answer_id": ..., "rating": "up"}``),
  drawn as a thumbs up / thumbs down on the answer, never as ordinary buttons;
- suggestions (``/select_suggestion{"item_id": ...}``) and every other button,
  drawn as the channel's buttons;
- quick replies, drawn as the channel's transient choices.

Each channel then draws a `BotReply` its own way: web widget events
(`BotReply.as_widget_event`), Slack Block Kit (`slack.py`), Telegram inline
keyboards (`telegram.py`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

from core.payloads import is_payload, parse_payload  # the one payload test; re-exported for the channels

RATE_ANSWER = "rate_answer"
SELECT_SUGGESTION = "select_suggestion"

__all__ = ["RATE_ANSWER", "SELECT_SUGGESTION", "is_payload", "parse_payload", "Button", "Rating", "BotReply", "split_rating"]


@dataclasses.dataclass(frozen=True)
class Button:
    """One choice offered to the customer."""

    title: str
    payload: str

    def as_dict(self) -> Dict[str, str]:
        """The button as Rasa writes it."""
        return {"title": self.title, "payload": self.payload}


@dataclasses.dataclass(frozen=True)
class Rating:
    """The thumbs up / thumbs down offered on one answer."""

    answer_id: str
    up: Optional[str] = None  # the payload sent for a thumbs up
    down: Optional[str] = None  # the payload sent for a thumbs down

    def payload_for(self, choice: str) -> Optional[str]:
        """The payload for 'up' or 'down'."""
        return {"up": self.up, "down": self.down}.get(choice)

    def as_dict(self) -> Dict[str, Any]:
        """The rating as the web widget reads it."""
        return {"answer_id": self.answer_id, "up": self.up, "down": self.down}


def _buttons(raw: Any) -> List[Button]:
    found = []
    for item in raw or []:
        if isinstance(item, dict) and item.get("payload") is not None:
            found.append(Button(str(item.get("title") or item["payload"]), str(item["payload"])))
    return found


def split_rating(buttons: List[Button]) -> Tuple[Optional[Rating], List[Button]]:
    """Take the rating buttons out of `buttons`; the rest keep their order."""
    rating: Dict[str, Any] = {}
    rest: List[Button] = []
    for button in buttons:
        parsed = parse_payload(button.payload)
        if parsed and parsed[0] == RATE_ANSWER and parsed[1].get("rating") in ("up", "down"):
            rating.setdefault("answer_id", str(parsed[1].get("answer_id", "")))
            rating[parsed[1]["rating"]] = button.payload
        else:
            rest.append(button)
    if not rating:
        return None, rest
    return Rating(rating["answer_id"], rating.get("up"), rating.get("down")), rest


@dataclasses.dataclass(frozen=True)
class BotReply:
    """One bot message, its buttons sorted by what they are for."""

    text: str = ""
    buttons: Tuple[Button, ...] = ()
    quick_replies: Tuple[Button, ...] = ()
    rating: Optional[Rating] = None
    image: Optional[str] = None
    agent: Optional[str] = None  # set when a human agent wrote the message
    notice: Optional[str] = None  # set on the assistant's handoff notices (queued, joined, returned)

    @classmethod
    def from_message(cls, message: Dict[str, Any]) -> "BotReply":
        """Read a message dictionary as Rasa gives it to output channels."""
        rating, buttons = split_rating(_buttons(message.get("buttons")))
        quick_rating, quick = split_rating(_buttons(message.get("quick_replies")))
        image = message.get("image")
        return cls(
            text=str(message.get("text") or ""),
            buttons=tuple(buttons),
            quick_replies=tuple(quick),
            rating=rating or quick_rating,
            image=image if isinstance(image, str) else None,
            agent=message.get("agent") if isinstance(message.get("agent"), str) else None,
            notice=message.get("notice") if isinstance(message.get("notice"), str) else None,
        )

    @property
    def is_empty(self) -> bool:
        """Whether there is nothing to show."""
        return not (self.text or self.buttons or self.quick_replies or self.rating or self.image)

    def as_widget_event(self, timestamp: Optional[float] = None) -> Dict[str, Any]:
        """The message as the web widget's ``bot_uttered`` event carries it."""
        event: Dict[str, Any] = {"text": self.text}
        if self.buttons:
            event["buttons"] = [b.as_dict() for b in self.buttons]
        if self.quick_replies:
            event["quick_replies"] = [b.as_dict() for b in self.quick_replies]
        if self.rating:
            event["rating"] = self.rating.as_dict()
        for key in ("image", "agent", "notice"):
            if getattr(self, key):
                event[key] = getattr(self, key)
        if timestamp is not None:
            event["timestamp"] = timestamp
        return event
