"""Local stand-ins for Slack's Web API and Telegram's Bot API, on loopback.

They answer what the assistant calls (``chat.postMessage``; ``sendMessage``,
``answerCallbackQuery``, ``setWebhook``, ``getMe``) the way the real APIs do,
and remember every call, so that tests can assert on what the assistant sent
and a developer can watch the Slack or Telegram channel work without an
account::

    python -m tests.standins --slack-port 8091 --telegram-port 8092
    SLACK_API_BASE_URL=http://127.0.0.1:8091/api/ \\
    TELEGRAM_API_BASE_URL=http://127.0.0.1:8092 make run

Each stand-in runs its own event loop in a background thread; `calls` is
safe to read from the test's thread.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import threading
import time
from typing import Any, Dict, List, Optional

from aiohttp import web


class _Standin:
    """An aiohttp app on 127.0.0.1 in a thread, recording the calls it answers."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.calls: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._runner: Optional[web.AppRunner] = None
        self._started = threading.Event()
        self._ids = itertools.count(1)

    def app(self) -> web.Application:  # pragma: no cover - defined by each stand-in
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        """The address to configure the channel with."""
        raise NotImplementedError

    def start(self) -> "_Standin":
        """Serve in a background thread; returns once the port is open."""
        thread = threading.Thread(target=self._serve, daemon=True)
        thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the stand-in server did not start")
        return self

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.app())
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # the port the OS chose for port 0
        self._started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        """Stop serving."""
        if self._loop is None:
            return

        async def shutdown() -> None:
            await self._runner.cleanup()
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)

    def record(self, method: str, params: Dict[str, Any], headers: Dict[str, str]) -> None:
        with self._lock:
            self.calls.append({"method": method, "params": params, "headers": headers, "at": time.time()})

    def calls_to(self, method: str) -> List[Dict[str, Any]]:
        """The parameters of every call of `method`, oldest first."""
        with self._lock:
            return [c["params"] for c in self.calls if c["method"] == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 30.0, where=None) -> List[Dict[str, Any]]:
        """Wait until `method` was called `count` times (matching `where`, if given); its calls."""
        deadline = time.monotonic() + timeout
        while True:
            found = [p for p in self.calls_to(method) if where is None or where(p)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def clear(self) -> None:
        """Forget the calls so far."""
        with self._lock:
            self.calls.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


async def request_params(request: web.Request) -> Dict[str, Any]:
    """A platform API call's parameters: its JSON body, or its form's text fields."""
    if request.content_type == "application/json":
        return await request.json()
    return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}


class SlackWebAPI(_Standin):
    """Slack's Web API: ``POST /api/<method>`` with a bot token."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def app(self) -> web.Application:
        async def method(request: web.Request) -> web.Response:
            name = request.match_info["method"]
            params = await request_params(request)
            self.record(name, params, dict(request.headers))
            if not request.headers.get("Authorization", "").startswith("Bearer "):
                return web.json_response({"ok": False, "error": "not_authed"})
            answer: Dict[str, Any] = {"ok": True}
            if name == "chat.postMessage":
                answer.update(channel=params.get("channel"), ts=f"{time.time():.6f}", message={"text": params.get("text")})
            return web.json_response(answer)

        app = web.Application()
        app.router.add_post("/api/{method}", method)
        return app


class TelegramBotAPI(_Standin):
    """Telegram's Bot API: ``POST /bot<token>/<method>``."""

    def __init__(self, port: int = 0, username: str = "northwind_test_bot") -> None:
        super().__init__(port)
        self.username = username

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        async def method(request: web.Request) -> web.Response:
            name = request.match_info["method"]
            params = await request_params(request)
            for key in ("reply_markup",):  # sent as JSON text inside the form
                if isinstance(params.get(key), str):
                    try:
                        params[key] = json.loads(params[key])
                    except ValueError:
                        pass
            self.record(name, params, dict(request.headers))
            result: Any = True
            if name == "getMe":
                result = {"id": 4242, "is_bot": True, "first_name": "Northwind", "username": self.username}
            elif name in ("sendMessage", "sendPhoto"):
                chat_id = params.get("chat_id")
                result = {
                    "message_id": next(self._ids),
                    "date": int(time.time()),
                    "chat": {"id": int(chat_id) if str(chat_id).lstrip("-").isdigit() else 0, "type": "private"},
                    "text": params.get("text", ""),
                }
            return web.json_response({"ok": True, "result": result})

        app = web.Application()
        app.router.add_post("/bot{token}/{method}", method)
        return app


def main() -> None:
    """Run both stand-ins until Ctrl-C, printing each call."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slack-port", type=int, default=8091)
    parser.add_argument("--telegram-port", type=int, default=8092)
    args = parser.parse_args()
    slack = SlackWebAPI(args.slack_port).start()
    telegram = TelegramBotAPI(args.telegram_port).start()
    print(f"SLACK_API_BASE_URL={slack.base_url}\nTELEGRAM_API_BASE_URL={telegram.base_url}", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.5)
            calls = sorted(slack.calls + telegram.calls, key=lambda c: c["at"])
            for call in calls[seen:]:
                print(call["method"], json.dumps(call["params"], ensure_ascii=False)[:500], flush=True)
            seen = len(calls)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
