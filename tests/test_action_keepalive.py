"""The action server keeps idle connections from the Rasa server open longer than the Rasa server's client reuses them.

Sanic's default (5 s) was shorter than the 15 s aiohttp's client keeps a
connection for reuse, so under load calls went down connections the action
server had just closed ("Cannot write to closing transport") and the
customer was asked to send the message again.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import aiohttp
import pytest

from bot.action_server import KEEP_ALIVE_TIMEOUT_S
from core.settings import PROJECT_ROOT

# One Sanic server per process (Sanic 21.12 does not start a second app's server in the same one).
PROBE = textwrap.dedent("""
    import asyncio, json, sys
    import aiohttp
    from sanic import Sanic, response
    from bot.action_server import keep_connections_open

    app = Sanic("keepalive_probe")

    @app.post("/webhook")
    async def webhook(request):
        return response.json({"port": request.conn_info.client_port})

    if sys.argv[1] == "kept":
        keep_connections_open(app)

    async def two_calls():
        server = await app.create_server(host="127.0.0.1", port=0, return_asyncio_server=True)
        await server.startup()
        port = server.server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as session:
                ports = []
                for pause in (0, 6):  # idle longer than Sanic's default 5 s
                    await asyncio.sleep(pause)
                    async with session.post(f"http://127.0.0.1:{port}/webhook", json={}) as answer:
                        ports.append((await answer.json())["port"])
                return ports
        finally:
            server.close()
            await server.wait_closed()

    print(json.dumps(asyncio.run(two_calls())))
""")


def test_the_server_keeps_connections_longer_than_the_client_reuses_them():
    async def default_keepalive_s() -> float:  # Rasa's EndpointConfig session uses aiohttp's default connector
        connector = aiohttp.TCPConnector()
        try:
            return connector._keepalive_timeout
        finally:
            await connector.close()

    assert KEEP_ALIVE_TIMEOUT_S > asyncio.run(default_keepalive_s())


@pytest.mark.parametrize("variant", ["kept", "sanic-default"])
def test_a_call_after_six_idle_seconds_reuses_the_connection_only_with_the_longer_timeout(variant):
    done = subprocess.run([sys.executable, "-c", PROBE, variant], cwd=str(PROJECT_ROOT), capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = json.loads(done.stdout.strip().splitlines()[-1])
    assert (first == second) is (variant == "kept"), (first, second)
