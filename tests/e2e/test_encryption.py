"""Encryption at rest, for real: with ASSISTANT_ENCRYPTION_KEY set, no customer's words reach the disk.

Starts its own Rasa server and action server (the session's `assistant` runs
without a key) on a copy of the session's project database, sends messages
through the REST channel, and reads every file the two servers wrote their
data into: the tracker store, the project database and their SQLite
write-ahead logs. The conversation still reads back through Rasa's API.
"""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.serve import Assistant
from core import crypto, db
from core.settings import PROJECT_ROOT
from tests.e2e.conftest import RunningAssistant, start_showing_logs
from tests.e2e.services import free_port

pytestmark = pytest.mark.e2e

# A made-up word: no redaction pattern touches it, so only encryption can keep it off the disk.
SECRET_WORD = "Zanzibarquix"


@pytest.fixture(scope="module")
def encrypted(trained_model, tmp_path_factory):
    """The assistant with a key, on its own databases (the session's project rows copied: legacy plaintext)."""
    workdir = tmp_path_factory.mktemp("encrypted")
    source = Path(trained_model["env"]["ASSISTANT_DATABASE_URL"][len("sqlite:///"):])
    if source.exists():
        shutil.copy(source, workdir / "assistant.db")
    env = dict(trained_model["env"])
    env.update(
        ASSISTANT_ENCRYPTION_KEY=crypto.new_key(),
        ASSISTANT_DATABASE_URL=f"sqlite:///{workdir / 'assistant.db'}",
        ASSISTANT_TRACKER_DB=str(workdir / "tracker.db"),
        ASSISTANT_RASA_PORT=str(free_port()),
        ASSISTANT_ACTION_PORT=str(free_port()),
        ASSISTANT_INGRESS_PER_ADDRESS_PER_MINUTE="0",
        ASSISTANT_ENV="demo",  # as the session's `assistant`: REST posts with the test caller's credential
    )
    credentials = PROJECT_ROOT / "bot" / "credentials.yml"
    servers = Assistant(trained_model["model"], env, int(env["ASSISTANT_RASA_PORT"]), int(env["ASSISTANT_ACTION_PORT"]),
                        workdir, credentials, log_dir=workdir)
    start_showing_logs(servers, workdir)
    yield RunningAssistant(servers.url, env["ASSISTANT_DATABASE_URL"], env, servers, workdir)
    servers.stop()


def test_no_customer_words_on_disk_with_a_key_and_the_conversation_still_reads(encrypted, monkeypatch):
    sender = f"enc_{uuid.uuid4().hex[:8]}"
    said = f"my parrot {SECRET_WORD} ate my bank statement"
    encrypted.send(sender, said)
    encrypted.send(sender, "I want to talk to a human")

    events = encrypted.tracker(sender)["events"]
    texts = [e.get("text") or "" for e in events if e["event"] == "user"]
    assert any(SECRET_WORD in t for t in texts), "Rasa reads its encrypted tracker back"

    files = [p for p in encrypted.workdir.iterdir() if p.name.startswith(("tracker.db", "assistant.db"))]
    assert any(p.name == "tracker.db" for p in files) and any(p.name == "assistant.db" for p in files)
    for path in files:
        found = SECRET_WORD.encode() in path.read_bytes()
        assert not found, f"{path.name} holds the customer's words in plaintext"

    # What the database does hold is the encrypted form of them, for whoever has the key.
    monkeypatch.setenv(crypto.KEY_VARIABLE, encrypted.env[crypto.KEY_VARIABLE])
    tracker = sa.create_engine(f"sqlite:///{encrypted.workdir / 'tracker.db'}")
    with tracker.connect() as conn:
        stored = [d for (d,) in conn.execute(sa.text("SELECT data FROM events WHERE sender_id LIKE :s"), {"s": f"%{sender}"})]
    assert stored and all(crypto.is_encrypted(d) for d in stored)
    assert any(SECRET_WORD in crypto.decrypt_text(d) for d in stored)
    with db.connect(encrypted.db_url).connect() as conn:
        summaries = conn.execute(sa.select(sa.type_coerce(db.handoffs.c.summary, sa.Text)).where(
            db.handoffs.c.conversation_id.like(f"%{sender}"))).scalars().all()
    assert all(s is None or crypto.is_encrypted(s) for s in summaries)


def test_a_malformed_key_stops_the_servers_naming_the_variable_never_the_key(trained_model, tmp_path):
    workdir = tmp_path
    bad = "not-a-fernet-key-0123456789"
    env = dict(trained_model["env"], ASSISTANT_ENCRYPTION_KEY=bad, ASSISTANT_ENV="demo",
               ASSISTANT_DATABASE_URL=f"sqlite:///{workdir / 'assistant.db'}", ASSISTANT_TRACKER_DB=str(workdir / "tracker.db"),
               ASSISTANT_RASA_PORT=str(free_port()), ASSISTANT_ACTION_PORT=str(free_port()))
    servers = Assistant(trained_model["model"], env, int(env["ASSISTANT_RASA_PORT"]), int(env["ASSISTANT_ACTION_PORT"]),
                        workdir, PROJECT_ROOT / "bot" / "credentials.yml", log_dir=workdir)
    try:
        with pytest.raises((RuntimeError, crypto.EncryptionKeyError)) as caught:
            servers.start(timeout=120)
    finally:
        servers.stop()
    said = str(caught.value) + "".join(p.read_text(errors="replace") for p in workdir.glob("*.log"))
    assert crypto.KEY_VARIABLE in said and "is not a Fernet key" in said
    assert bad not in said, "the key itself is never printed"
