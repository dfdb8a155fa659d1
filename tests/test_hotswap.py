"""core.hotswap (the release poller), the Rasa server's swap (bot.model_swap) and the action server's reload."""
from __future__ import annotations

import asyncio
import io
import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot import action_server, model_swap
from bot.actions import suggestions
from core import hotswap, metrics, releases, serving


def watcher(tmp_path, load, events=None):
    return hotswap.ReleaseWatcher("test", load, model_dir=tmp_path, poll_seconds=0.01,
                                  on_reload=events.append if events is not None else None)


def publish(tmp_path, **kwargs) -> releases.Release:
    return releases.publish(parts=kwargs.pop("parts", {"recommender": str(tmp_path / "rec")}), model_dir=tmp_path, **kwargs)


def test_nothing_happens_before_the_first_release(tmp_path):
    w = watcher(tmp_path, lambda release: pytest.fail("nothing to load"))
    assert asyncio.run(w.check()) is False
    assert w.status()["state"] == hotswap.WAITING and w.status()["version"] is None


def test_a_new_release_is_loaded_off_the_loop_and_switched_on_it(tmp_path):
    threads = {}
    events = []

    def load(release):
        threads["load"] = threading.current_thread()
        return lambda: threads.setdefault("switch", threading.current_thread())

    w = watcher(tmp_path, load, events)
    release = publish(tmp_path)

    async def go():
        threads["loop"] = threading.current_thread()
        return await w.check()

    assert asyncio.run(go()) is True
    assert threads["load"] is not threads["loop"] and threads["switch"] is threads["loop"]
    status = w.status()
    assert status["version"] == release.version and status["state"] == hotswap.SERVING and status["error"] is None
    assert events[-1]["outcome"] == "switched" and events[-1]["version"] == release.version
    exposition = metrics.metrics_response_body()[0].decode()
    assert f'assistant_release_info{{action="promote",process="test",version="{release.version}"}} 1.0' in exposition
    assert 'assistant_reloads_total{outcome="ok",process="test"}' in exposition


def test_the_same_version_is_not_loaded_twice(tmp_path):
    calls = []
    w = watcher(tmp_path, lambda release: calls.append(release.version) or (lambda: None))
    publish(tmp_path)
    asyncio.run(w.check())
    asyncio.run(w.check())
    assert len(calls) == 1


def test_a_failed_load_keeps_the_old_release_says_why_and_is_not_retried(tmp_path):
    events = []
    good = publish(tmp_path)
    load = {"fn": lambda release: (lambda: None)}
    w = watcher(tmp_path, lambda release: load["fn"](release), events)
    asyncio.run(w.check())

    def broken(release):
        raise OSError("archive models/x.tar.gz is truncated")

    load["fn"] = broken
    bad = publish(tmp_path)
    assert asyncio.run(w.check()) is False
    status = w.status()
    assert status["version"] == good.version  # still served
    assert status["state"] == hotswap.FAILED and status["failed_version"] == bad.version
    assert "truncated" in status["error"]
    assert events[-1]["outcome"] == "failed" and events[-1]["previous"] == good.version
    load["fn"] = lambda release: pytest.fail("a failed version is not tried again")
    asyncio.run(w.check())
    load["fn"] = lambda release: (lambda: None)
    fixed = publish(tmp_path)
    assert asyncio.run(w.check()) is True
    assert w.status()["version"] == fixed.version and w.status()["state"] == hotswap.SERVING
    assert w.status()["error"] is None


def test_a_switch_that_raises_keeps_the_old_release(tmp_path):
    def load(release):
        def switch():
            raise RuntimeError("half-way")
        return switch

    w = watcher(tmp_path, load)
    publish(tmp_path)
    asyncio.run(w.check())
    assert w.status()["version"] is None and w.status()["state"] == hotswap.FAILED


def test_an_unreadable_marker_is_reported_and_recovered_from(tmp_path):
    w = watcher(tmp_path, lambda release: (lambda: None))
    (tmp_path / releases.RELEASE_FILE).write_text("{not json")
    asyncio.run(w.check())
    assert w.status()["state"] == hotswap.FAILED and "release marker unreadable" in w.status()["error"]
    assert str(tmp_path / releases.RELEASE_FILE) in w.status()["error"]
    release = publish(tmp_path)
    asyncio.run(w.check())
    assert w.status()["state"] == hotswap.SERVING and w.status()["version"] == release.version


def test_the_poll_loop_runs_until_stopped(tmp_path):
    async def go():
        w = watcher(tmp_path, lambda release: (lambda: None))
        w.start()
        publish(tmp_path)
        for _ in range(200):
            if w.version:
                break
            await asyncio.sleep(0.01)
        await w.stop()
        return w

    assert asyncio.run(go()).state == hotswap.SERVING


def test_a_poll_interval_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="model_poll_seconds"):
        hotswap.ReleaseWatcher("test", lambda r: (lambda: None), model_dir=tmp_path, poll_seconds=0)


# ------------------------------------------------------------------ the action server


def test_the_action_server_switches_its_recommender_only_once_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(suggestions, "_recommender", None)
    load = action_server.recommender_loader()
    monkeypatch.setattr(suggestions, "_load_recommender", lambda: pytest.fail("not loaded yet: nothing to reload"))
    load(publish(tmp_path))()
    assert suggestions.loaded_recommender() is None
    old, new = object(), object()
    suggestions.use_recommender(old)
    monkeypatch.setattr(suggestions, "_load_recommender", lambda: new)
    switch = load(publish(tmp_path))
    assert suggestions.loaded_recommender() is old  # loaded beside it, not yet in service
    switch()
    assert suggestions.loaded_recommender() is new


# ------------------------------------------------------------------ the Rasa server


class FakeAgent:
    def __init__(self, model_path):
        self.processor = SimpleNamespace(model_path=Path(model_path), domain=None)


def test_the_rasa_server_loads_no_processor_for_the_archive_it_serves(tmp_path, monkeypatch):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"")
    agent = FakeAgent(archive)
    monkeypatch.setattr(model_swap, "build_processor", lambda *a: pytest.fail("no new processor needed"))
    from bot.insight import profile

    load = model_swap.rasa_loader(lambda: agent)
    load(publish(tmp_path, rasa_model=archive))()
    profile.use_recommender(object())
    load(publish(tmp_path, rasa_model=None))()  # only the recommender was promoted
    assert agent.processor.model_path == archive
    assert profile._recommender is None  # the customer pages load the promoted recommender on next use


def test_a_promoted_index_comes_with_a_new_graph_of_the_served_archive(tmp_path, monkeypatch):
    archive = tmp_path / "a.tar.gz"
    agent = FakeAgent(archive)
    built = []
    monkeypatch.setattr(model_swap, "check_archive", lambda path: None)
    monkeypatch.setattr(model_swap, "build_processor", lambda agent_, path: built.append(path) or SimpleNamespace(model_path=path))
    monkeypatch.setattr(model_swap, "install_processor", lambda agent_, processor: setattr(agent_, "processor", processor))
    monkeypatch.setattr(model_swap, "keep_out_of_collections", lambda: None)

    model_swap.rasa_loader(lambda: agent)(publish(tmp_path, rasa_model=None, parts={"index": str(tmp_path / "index")}))()

    assert built == [archive]  # the retriever of the new graph reads the promoted index


def test_a_broken_archive_is_named_and_the_served_prefetchers_stay(tmp_path, monkeypatch):
    agent = FakeAgent(tmp_path / "a.tar.gz")
    served = serving.prefetchers()
    broken = tmp_path / "b.tar.gz"
    broken.write_bytes(b"not a tar")
    with pytest.raises(Exception, match="b.tar.gz"):
        model_swap.rasa_loader(lambda: agent)(publish(tmp_path, rasa_model=broken))
    assert serving.prefetchers() == served


def test_the_new_graph_prefetchers_take_over_at_the_switch(tmp_path, monkeypatch):
    agent = FakeAgent(tmp_path / "a.tar.gz")
    old_fn, new_fn = (lambda texts: None), (lambda texts: None)
    serving.use_prefetchers({("intent", "old"): old_fn})
    new_processor = SimpleNamespace(model_path=tmp_path / "b.tar.gz")

    def build(agent_, path):
        serving.register_prefetch(("intent", "new"), new_fn)
        return new_processor

    installed = []
    monkeypatch.setattr(model_swap, "check_archive", lambda path: None)
    monkeypatch.setattr(model_swap, "build_processor", build)
    monkeypatch.setattr(model_swap, "install_processor", lambda a, p: installed.append(p))
    monkeypatch.setattr(model_swap, "keep_out_of_collections", lambda: None)  # the test process's collector is left alone
    try:
        switch = model_swap.rasa_loader(lambda: agent)(publish(tmp_path, rasa_model=tmp_path / "b.tar.gz"))
        assert serving.prefetchers() == {("intent", "old"): old_fn}  # the served model's, until the switch
        switch()
        assert installed == [new_processor]
        assert serving.prefetchers() == {("intent", "new"): new_fn}  # the old graph is not kept alive
    finally:
        serving.use_prefetchers({})


def test_install_processor_mirrors_rasas_load_model():
    from rasa.core.agent import Agent
    from rasa.shared.core.domain import Domain

    agent = Agent()
    domain = Domain.from_dict({"responses": {"utter_greet": [{"text": "Hello from the new model"}]}})
    before = agent.fingerprint if hasattr(agent, "fingerprint") else None
    model_swap.install_processor(agent, SimpleNamespace(domain=domain))
    assert agent.domain is domain and agent.tracker_store.domain is domain
    assert agent.nlg.responses["utter_greet"][0]["text"] == "Hello from the new model"
    assert agent.fingerprint and agent.fingerprint != before
    assert agent.is_ready()


def test_a_relative_archive_is_under_the_project():
    from core.settings import PROJECT_ROOT

    assert model_swap.archive_path("models/x.tar.gz") == PROJECT_ROOT / "models" / "x.tar.gz"
    assert model_swap.archive_path("/srv/m.tar.gz") == Path("/srv/m.tar.gz")


# ------------------------------------------------------------------ the launcher


def test_the_launcher_serves_the_release_s_archive_else_the_newest(tmp_path):
    from bot.serve import served_model

    older, newer = tmp_path / "old.tar.gz", tmp_path / "new.tar.gz"
    older.write_bytes(b"")
    newer.write_bytes(b"")
    os.utime(older, (1_000_000, 1_000_000))
    assert served_model(tmp_path) == newer  # no release: the newest, as before
    releases.publish(parts={}, rasa_model=older, model_dir=tmp_path)
    assert served_model(tmp_path) == older
    (tmp_path / releases.RELEASE_FILE).write_text("[]")
    with pytest.raises(SystemExit, match="release.json"):
        served_model(tmp_path)


# ------------------------------------------------------------------ the load benchmark's promotion


def test_a_marked_copy_of_a_model_answers_with_the_marker(tmp_path):
    import tarfile

    import yaml

    from bot.bench_load import repack_with_marker
    from core.model_check import check_model

    source = tmp_path / "a.tar.gz"
    domain = {"responses": {"utter_greet": [{"text": "Hello!"}, {"image": "x.png"}]}}
    with tarfile.open(source, "w:gz") as out:
        for name, data in (("metadata.json", json.dumps({"domain": domain, "model_id": "a"}).encode()),
                           ("components/domain_provider/domain.yml", yaml.safe_dump(domain).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    marked = repack_with_marker(source, tmp_path / "b.tar.gz", "[B] ")
    check_model(marked)
    with tarfile.open(marked) as archive:
        metadata = json.loads(archive.extractfile("metadata.json").read())
        provided = yaml.safe_load(archive.extractfile("components/domain_provider/domain.yml").read())
    assert metadata["domain"]["responses"]["utter_greet"] == [{"text": "[B] Hello!"}, {"image": "x.png"}]
    assert provided["responses"]["utter_greet"][0]["text"] == "[B] Hello!"
    assert metadata["model_id"] != "a"


def test_the_hot_swap_summary_splits_at_the_switch_and_finds_old_answers():
    from bot.bench_load import Result, hot_swap_summary, hot_swap_table

    results = [
        Result(100, True, message="a: hi", sent=95.0, texts=["Hello"]),
        Result(900, True, message="b: hi", sent=100.5, texts=["Hello"]),  # in flight across the switch: fine
        Result(120, True, message="c: hi", sent=103.0, texts=["[B] Hello"]),
        Result(110, True, message="d: hi", sent=104.0, texts=["Hello"]),  # after the switch, old model: counted
        Result(30000, False, "timeout", message="e: hi", sent=101.0),
    ]
    swap = hot_swap_summary(results, published=100.0, switched=102.0, marker="[B] ")
    assert swap["switch_seconds"] == 2.0
    assert [swap[p]["messages"] for p in ("before", "during", "after")] == [1, 2, 2]
    assert swap["during"]["errors"] == 1 and swap["after"]["errors"] == 0
    assert swap["answered_after_switch"] == 2 and swap["old_answers_after_switch"] == 1
    swap.update(promote_at=30, poll_seconds=2, rasa_version="v2", actions_version="v2", actions_switch_seconds=1.0)
    assert "from the old model: 1" in hot_swap_table(swap)


def test_the_action_server_health_says_which_release_it_serves(tmp_path):
    registered = {}
    app = SimpleNamespace(register_listener=lambda fn, event: registered.setdefault(event, fn),
                          register_middleware=lambda fn, kind: registered.setdefault(kind, fn))
    w = watcher(tmp_path, lambda release: (lambda: None))
    action_server.install_release_watcher(app, w)
    release = publish(tmp_path)
    asyncio.run(w.check())
    answer = asyncio.run(registered["request"](SimpleNamespace(method="GET", path="/health")))
    body = json.loads(answer.body)
    assert answer.status == 200 and body["status"] == "ok" and body["release"]["version"] == release.version
    assert set(body["release"]) == set(action_server.PUBLIC_RELEASE_FIELDS)  # open endpoint: no error text
    assert asyncio.run(registered["request"](SimpleNamespace(method="POST", path="/webhook"))) is None
    assert set(registered) == {"after_server_start", "before_server_stop", "request"}


def test_releases_load_on_a_thread_of_lower_priority(tmp_path):
    seen = {}

    def load(release):
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return lambda: None

    publish(tmp_path)
    asyncio.run(watcher(tmp_path, load).check())
    assert seen["nice"] >= min(hotswap.LOADER_NICENESS, 19)


def test_each_reload_is_a_row_of_the_audit_trail(tmp_path, monkeypatch):
    import sqlalchemy as sa

    from core import db

    engine = db.connect(f"sqlite:///{tmp_path}/a.db")
    monkeypatch.setattr(db, "connect", lambda url=None: engine)
    w = hotswap.ReleaseWatcher("rasa", lambda release: (lambda: None), model_dir=tmp_path, poll_seconds=1,
                               on_reload=hotswap.audit_reload)
    good = publish(tmp_path)
    asyncio.run(w.check())
    w._load = lambda release: (_ for _ in ()).throw(OSError("archive truncated"))
    bad = publish(tmp_path)
    asyncio.run(w.check())
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.audit_log.c.actor, db.audit_log.c.action, db.audit_log.c.target,
                                      db.audit_log.c.detail).order_by(db.audit_log.c.id)).all()
    assert [(r.action, r.target) for r in rows] == [("model.reload", good.version), ("model.reload.failed", bad.version)]
    assert rows[0].actor.startswith("rasa@") and "truncated" in rows[1].detail["error"]
    assert rows[1].detail["previous"] == good.version


def test_an_audit_trail_that_cannot_be_written_never_undoes_a_switch(tmp_path):
    def unreachable(event):
        raise RuntimeError("database down")

    w = hotswap.ReleaseWatcher("rasa", lambda release: (lambda: None), model_dir=tmp_path, poll_seconds=1,
                               on_reload=unreachable)
    release = publish(tmp_path)
    assert asyncio.run(w.check()) is True and w.status()["version"] == release.version
