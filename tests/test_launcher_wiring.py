"""The launcher's start-up wiring: demo inbox account, encryption key checked before any server starts."""
from __future__ import annotations

import pytest

from bot import serve
from bot.security import staff
from core import db
from core.crypto import EncryptionKeyError, check_key


def test_demo_mode_gets_an_inbox_admin_with_a_fresh_password_each_start(tmp_path):
    url = f"sqlite:///{tmp_path / 'assistant.db'}"
    first = serve.demo_inbox_account(url)
    second = serve.demo_inbox_account(url)
    assert first[0] == second[0] == staff.DEMO_ADMIN
    assert first[1] != second[1] and len(second[1]) >= 12
    engine = db.connect(url)
    assert staff.get_account(engine, staff.DEMO_ADMIN).role == "admin"


def test_a_malformed_encryption_key_is_refused_from_the_launcher_s_environment():
    with pytest.raises(EncryptionKeyError) as refused:
        check_key({"ASSISTANT_ENCRYPTION_KEY": "not-a-fernet-key"})
    assert "not-a-fernet-key" not in str(refused.value)
    assert check_key({}) is False


def test_the_launcher_refuses_to_start_with_a_malformed_key(monkeypatch, capsys):
    monkeypatch.setenv("ASSISTANT_ENCRYPTION_KEY", "not-a-fernet-key")
    monkeypatch.setenv("ASSISTANT_ENV", "local")
    monkeypatch.setattr(serve, "prepare", lambda *a, **k: pytest.fail("training must not start"))
    assert serve.main([]) == 2
    assert "ASSISTANT_ENCRYPTION_KEY" in capsys.readouterr().err


def test_serving_an_onboarding_project_without_a_built_model_says_to_build_it(tmp_path, capsys):
    assert serve.main(["--demo", "--onboarded", str(tmp_path / "project")]) == 2
    err = capsys.readouterr().err
    assert "no built model" in err and f"python -m training.onboard build {tmp_path / 'project'}" in err


def test_every_server_gets_one_numeric_thread_and_a_deep_listen_queue_unless_the_environment_says(tmp_path, monkeypatch):
    seen = []

    class Spawned:
        def __init__(self, args, env, **kwargs):
            seen.append(env)

    monkeypatch.setattr(serve.subprocess, "Popen", Spawned)
    servers = serve.Assistant(tmp_path / "m.tar.gz", {"PATH": "/usr/bin"}, 5005, 5055, tmp_path, tmp_path / "c.yml")
    servers._spawn(["rasa", "run"], "rasa")
    assert seen[-1]["SANIC_BACKLOG"] == "1024" and seen[-1]["OPENBLAS_NUM_THREADS"] == "1"
    servers = serve.Assistant(tmp_path / "m.tar.gz", {"SANIC_BACKLOG": "4096", "OMP_NUM_THREADS": "2"}, 5005, 5055,
                              tmp_path, tmp_path / "c.yml")
    servers._spawn(["rasa", "run"], "rasa")
    assert seen[-1]["SANIC_BACKLOG"] == "4096" and seen[-1]["OMP_NUM_THREADS"] == "2"
