"""The inbox's onboarding page over real HTTP: lists, candidate pages, decisions by form and JSON, runs, refusals.

The inbox runs in a real Sanic server on loopback with a real SQLite database
(as tests/test_inbox.py); the onboarding project is a small proposal written
in tmp_path, named by ASSISTANT_ONBOARDING_DIR for each test.
"""
from __future__ import annotations

import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import List, Sequence, Tuple

import pytest

from bot.channels.inbox import AgentInbox
from bot.insight import onboarding_page
from bot.insight.onboarding_page import Where, step_command
from bot.security import audit, staff
from core import db
from core.settings import get_settings
from tests.oidc_standin import no_redirects
from tests.onboarding_proposal import write_small_proposal
from tests.test_channels_webhooks import ServedChannels
from tests.test_inbox import PASSWORD, Client

ONB = "/onboarding"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    engine = db.connect(f"sqlite:///{tmp_path_factory.mktemp('onboarding') / 'assistant.db'}")
    for name, role in (("alex", "agent"), ("sam", "supervisor")):
        staff.add_account(engine, name, PASSWORD, role=role, display_name=name.title())
    return engine


@pytest.fixture(scope="module")
def served(engine):
    server = ServedChannels([AgentInbox(engine)], engine).start()
    yield server
    server.stop()


def configure(monkeypatch, folder: str = "", transcripts: str = "") -> None:
    for name, value in (("ASSISTANT_ONBOARDING_DIR", folder), ("ASSISTANT_ONBOARDING_TRANSCRIPTS", transcripts)):
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


@pytest.fixture
def project(tmp_path, monkeypatch):
    project = write_small_proposal(tmp_path / "acme")
    (tmp_path / "transcripts").mkdir()
    configure(monkeypatch, str(project.folder), str(tmp_path / "transcripts"))
    yield project
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def sam(served) -> Client:
    client = Client(served)
    assert client.login("sam")[0] == 200
    return client


def post_form(client: Client, path: str, fields: Sequence[Tuple[str, str]], csrf: bool = True,
              headers: dict = None) -> Tuple[int, str, str]:
    """(status, Location, page) of a form POST as a browser sends it (the token in the form), not following redirects."""
    data = list(fields) + ([("csrf_token", client.csrf)] if csrf else [])
    sent = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": client.cookie, **(headers or {})}
    request = urllib.request.Request(client.base + path, data=urllib.parse.urlencode(data).encode(), headers=sent,
                                     method="POST")
    try:
        with no_redirects().open(request, timeout=30) as answer:
            return answer.status, answer.headers.get("Location", ""), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", ""), error.read().decode()


def page(client: Client, path: str) -> str:
    status, _, body = client.call("GET", path)
    assert status == 200, body
    return body


# ------------------------------------------------------------------ reading


def test_the_list_shows_candidates_estimate_flags_and_controls_escaping_customer_text(sam, project):
    html = page(sam, ONB)
    assert 'id="candidates"' in html and all(f'id="cand-c{n}"' in html for n in range(1, 6))
    assert "Discovery estimated 5 intents (likely between 4 and 7), by silhouette." in html
    assert "5 proposed, 0 accepted, 0 discarded" in html and "conversations 31" in html
    row = html.split('id="cand-c1"')[1].split("</tr>")[0]
    assert "near-duplicate of c2" in row and "many outliers (2)" in row and "0.61" in row and "lost, card, report" in row
    assert 'href="/webhooks/inbox/onboarding/c/c1"' in row and ">Accept<" in row and ">Discard<" in row and "Rename" in row
    assert f'name="csrf_token" value="{sam.csrf}"' in row
    assert "small" in html.split('id="cand-c4"')[1].split("</tr>")[0]
    assert "<b>error</b>" not in html and "&lt;b&gt;error&lt;/b&gt;" in html
    assert "Discover intents in the transcripts" in html and "Build the assistant" in html


def test_the_candidate_page_shows_examples_response_kind_spans_and_merge(sam, project):
    html = page(sam, ONB + "/c/c1")
    assert 'type="checkbox" name="examples" value="l1"' in html and "chats.jsonl:3" in html
    outlier = html.split('id="ex-l7"')[0].rsplit("<tr", 1)[1] + html.split('id="ex-l7"')[1].split("</tr>")[0]
    assert 'class="outlier"' in outlier and "outlier-mark" in outlier
    assert "outlier-mark" not in html.split('id="ex-l1"')[1].split("</tr>")[0]
    assert '<textarea name="text" id="response"' in html and "Please freeze the card in the app.</textarea>" in html
    assert "agents asked for the card&#x27;s last four" in html and 'id="merge-with"' in html and 'id="split"' in html
    assert 'value="c2">c2 stolen_card (5)' in html  # merge and move targets
    hours = page(sam, ONB + "/c/c3")
    assert 'id="alternatives"' in hours and "Mon-Fri 9-5" in hours
    refund = page(sam, ONB + "/c/c4")
    assert "<td>order number</td><td>12345</td>" in refund and "20 EUR" in refund
    markup = page(sam, ONB + "/c/c5")
    assert "<script>" not in markup and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in markup
    assert "<em>reinstalling</em>" not in markup and "&lt;i&gt;answered&lt;/i&gt;" in markup


def test_an_unknown_candidate_is_a_not_found_page(sam, project):
    status, _, html = sam.call("GET", ONB + "/c/c99")
    assert status == 404 and "No candidate intent" in html and "c99" in html


def test_without_settings_the_page_says_how_to_set_them(sam, monkeypatch):
    configure(monkeypatch)
    try:
        html = page(sam, ONB)
        assert "ASSISTANT_ONBOARDING_DIR" in html and "ASSISTANT_ONBOARDING_TRANSCRIPTS" in html
        status, _, html = post_form(sam, ONB + "/decide", [("action", "accept"), ("id", "c1")])
        assert status == 400 and "No onboarding project folder is set" in html
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_before_discovery_the_page_says_to_run_it(sam, monkeypatch, tmp_path):
    configure(monkeypatch, str(tmp_path / "new"), str(tmp_path))
    try:
        html = page(sam, ONB)
        assert "No proposal yet in" in html and 'id="candidates"' not in html and 'id="run-discover"' in html
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


# ------------------------------------------------------------------ deciding


def test_form_decisions_are_recorded_by_the_supervisor_audited_and_redirect_back(sam, project, engine):
    status, location, _ = post_form(sam, ONB + "/decide", [("action", "rename"), ("id", "c3"),
                                                           ("name", "opening_times"), ("back", "list")])
    assert status == 303 and location.startswith("/webhooks/inbox/onboarding?done=Renamed+c3+to+opening_times")
    assert "Renamed c3 to opening_times." in page(sam, location.replace("/webhooks/inbox", ""))
    back = ("back", "candidate")
    status, location, _ = post_form(sam, ONB + "/decide", [("action", "response"), ("id", "c3"),
                                                           ("text", "We open at nine & close at five."), back])
    assert status == 303 and location.startswith("/webhooks/inbox/onboarding/c/c3?done=")
    assert "We open at nine &amp; close at five.</textarea>" in page(sam, ONB + "/c/c3")
    steps: List[List[Tuple[str, str]]] = [
        [("action", "split"), ("id", "c1"), ("examples", "l6"), ("examples", "l7"), ("name", "change_address"), back],
        [("action", "move"), ("id", "c4"), ("examples", "r1"), ("examples", "r2"), ("to", "c1"), back],
        [("action", "merge"), ("id", "c1"), ("with", "c2"), ("name", "lost_or_stolen_card"), back],
        [("action", "kind"), ("id", "c5"), ("kind", "task"), back],
        [("action", "discard"), ("id", "c4"), back],
        [("action", "reopen"), ("id", "c4"), back],
        [("action", "accept"), ("id", "c1"), back],
    ]
    for fields in steps:
        status, location, html = post_form(sam, ONB + "/decide", fields)
        assert status == 303, html
    state = project.reviewed()
    c1 = state.candidate("c1")
    assert (c1.name, c1.status) == ("lost_or_stolen_card", "accepted")
    assert [e.id for e in c1.examples] == ["l1", "l2", "l3", "l4", "l5", "r1", "r2", "s1", "s2", "s3", "s4", "s5"]
    assert [e.id for e in state.candidate("c6").examples] == ["l6", "l7"] and state.candidate("c6").name == "change_address"
    assert state.candidate("c2").status == "discarded" and state.candidate("c5").kind == "task"
    decisions = project.decisions()
    assert len(decisions) == 10 and {d["by"] for d in decisions} == {"sam"}
    assert [d["action"] for d in decisions][2:5] == ["split", "move", "move"]
    audited = audit.recent(engine, actor="sam", action="onboarding.split")
    assert audited and audited[0]["target"] == "c1" and audited[0]["detail"]["new_id"] == "c6"
    response_row = audit.recent(engine, actor="sam", action="onboarding.response")[0]
    assert response_row["detail"]["chars"] == len("We open at nine & close at five.") and "text" not in response_row["detail"]


def test_a_json_decision_is_recorded_and_answered_in_json(sam, project):
    status, _, body = sam.call("POST", ONB + "/decide", {"action": "accept", "id": "c3", "by": "mallory", "extra": 1})
    assert status == 200 and body["decisions"][0]["by"] == "sam" and "extra" not in body["decisions"][0]
    status, _, body = sam.call("POST", ONB + "/decide", {"action": "rename", "id": "c3", "name": "Bad Name"})
    assert status == 400 and "intent name 'Bad Name' must be" in body["error"]
    status, _, body = sam.call("POST", ONB + "/decide", ["accept"])
    assert status == 400 and "one decision as a JSON object" in body["error"]
    assert len(project.decisions()) == 1


@pytest.mark.parametrize("fields, message", [
    ([("action", "rename"), ("id", "c1"), ("name", "<b>Lost</b>")], "intent name &#x27;&lt;b&gt;Lost&lt;/b&gt;&#x27; must be"),
    ([("action", "rename"), ("id", "c1"), ("name", "stolen_card")], "already used by candidate c2"),
    ([("action", "split"), ("id", "c1"), ("name", "x_y")], "tick the examples to split off"),
    ([("action", "move"), ("id", "c1"), ("to", "c2")], "tick the examples to move"),
    ([("action", "move"), ("id", "c1"), ("examples", "l1"), ("examples", "zz"), ("to", "c2")], "no example &#x27;zz&#x27;"),
    ([("action", "merge"), ("id", "c1")], "choose the candidate to merge"),
    ([("action", "accept"), ("id", "c42")], "no candidate intent &#x27;c42&#x27;"),
    ([("action", "kind"), ("id", "c1"), ("kind", "form")], "kind must be one of question, task"),
    ([("action", "response"), ("id", "c1"), ("text", " ")], "a response needs its text"),
    ([("action", "explode"), ("id", "c1")], "unknown review action"),
])
def test_a_decision_that_cannot_apply_is_a_400_page_saying_why_and_nothing_is_recorded(sam, project, fields, message):
    status, _, html = post_form(sam, ONB + "/decide", fields + [("back", "candidate")])
    assert status == 400 and 'id="error"' in html and message in html
    assert project.decisions() == []  # a move of l1 then an unknown example moves nothing


def test_posts_need_the_token_the_same_site_and_a_supervisor(served, sam, project):
    assert post_form(sam, ONB + "/decide", [("action", "accept"), ("id", "c1")], csrf=False)[0] == 403
    status, _, html = post_form(sam, ONB + "/decide", [("action", "accept"), ("id", "c1")],
                                headers={"Origin": "https://evil.example"})
    assert status == 403 and "another site" in html
    alex = Client(served)
    assert alex.login("alex")[0] == 200
    assert alex.call("GET", ONB)[0] == 403 and alex.call("GET", ONB + "/c/c1")[0] == 403
    assert post_form(alex, ONB + "/decide", [("action", "accept"), ("id", "c1")])[0] == 403
    assert post_form(alex, ONB + "/run", [("step", "build")])[0] == 403
    assert Client(served).call("GET", ONB)[0] == 401
    assert project.decisions() == []


# ------------------------------------------------------------------ running discovery and build


def test_the_steps_run_the_onboarding_commands():
    where = Where("/p", "/t")
    assert step_command("discover", where) == [sys.executable, "-m", "training.onboard", "--transcripts", "/t", "--out", "/p"]
    assert step_command("build", where) == [sys.executable, "-m", "training.onboard", "build", "/p"]
    with pytest.raises(onboarding_page.Refused, match="No transcripts folder is set"):
        step_command("discover", Where("/p", ""))
    with pytest.raises(onboarding_page.Refused, match="step must be one of discover, build"):
        step_command("train", where)


def test_one_step_runs_at_a_time_and_the_page_shows_its_log(sam, project, monkeypatch, engine):
    status, _, body = sam.call("POST", ONB + "/run", {"step": "nonsense"})
    assert status == 400 and "step must be one of discover, build" in body["error"]
    script = "import sys, time; print('reading transcripts <3>', flush=True); print('embedding 10%\\rembedding 100%', flush=True); time.sleep(1.5); print('done'); sys.exit(3)"
    monkeypatch.setattr(onboarding_page, "step_command", lambda step, where: [sys.executable, "-c", script])
    status, location, _ = post_form(sam, ONB + "/run", [("step", "discover")])
    assert status == 303 and "done=The+discover+step+is+running" in location
    status, _, html = post_form(sam, ONB + "/run", [("step", "build")])
    assert status == 409 and "is still running: wait for it to finish" in html
    html = page(sam, ONB)
    assert "running since" in html and "disabled" in html.split('id="run-build"')[1].split("</form>")[0]
    deadline = time.time() + 30
    while "finished at" not in html and time.time() < deadline:
        time.sleep(0.3)
        html = page(sam, ONB)
    assert "exit status 3 (failed: see the log)" in html
    log = html.split('id="run-log">')[1].split("</pre>")[0]
    assert "reading transcripts &lt;3&gt;\nembedding 100%\ndone" in log
    assert (project.folder / "onboarding" / "discover.log").exists()
    assert audit.recent(engine, actor="sam", action="onboarding.run")[0]["detail"]["step"] == "discover"
