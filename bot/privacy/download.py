"""The download route of data exports, inside the Rasa server.

``GET /webhooks/privacy/export/<token>`` answers the JSON export whose token
was given to the customer in their conversation (`bot.privacy.export`), while
it has not expired. Any other token (malformed, unknown, expired, erased)
gets the same 404, so nothing can be learnt by guessing. Registered in
bot/credentials.yml as ``bot.privacy.download.DataExportDownload``.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Awaitable, Callable

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{40,64}$")
_NOT_FOUND = {"error": "no such export, or its link has expired; ask the assistant for a new copy of your data"}


class DataExportDownload(InputChannel):
    """Serves data exports by token (no messages come in here)."""

    @classmethod
    def name(cls) -> str:
        return "privacy"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        blueprint = Blueprint("privacy_export_download", __name__)

        @blueprint.route("/export/<token>", methods=["GET"])
        async def download(request: Request, token: str):
            from bot.privacy.export import find_export
            from core import db

            if not _TOKEN.match(token or ""):
                return response.json(_NOT_FOUND, status=404)
            try:
                content = find_export(db.connect(), token)
            except Exception:  # noqa: BLE001 - the database down: say so, never a 500 with a trace
                logger.exception("data export lookup failed")
                return response.json({"error": "the service is busy; try again in a minute"}, status=503)
            if content is None:
                return response.json(_NOT_FOUND, status=404)
            return response.raw(content.encode("utf-8"), content_type="application/json", headers={
                "Content-Disposition": 'attachment; filename="my-data.json"',
                "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            })

        return blueprint
