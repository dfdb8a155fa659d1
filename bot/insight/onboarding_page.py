"""The inbox's onboarding page: supervisors review the candidate intents discovered in the chat history.

`register(inbox, channel)` adds to the inbox blueprint (`bot.channels.inbox`):

- ``GET onboarding``: the candidates of the project in the ``onboarding_dir``
  setting (name, size, status, kind, words, flags, cohesion), the number of
  intents discovery estimated with its range, what it read, accept / discard /
  rename controls, and the discovery or build run in progress or last done
  (with the tail of its log);
- ``GET onboarding/c/<id>``: one candidate: its examples (tick some to split
  them into a new intent or move them to another candidate; outliers marked),
  the drafted response (editable) and its alternatives, the kind with its
  evidence, entity-looking spans, merge with another candidate;
- ``POST onboarding/decide`` (a form, or JSON: one `core.onboarding` decision)
  records the decision as the signed-in supervisor (``by`` = their username)
  through `OnboardingProject.decide`, audited as ``onboarding.<action>``; a
  decision that cannot apply is a 400 page (or JSON ``{"error"}``) saying why;
- ``POST onboarding/run`` ``step=discover|build`` starts ``python -m
  training.onboard --transcripts T --out P`` or ``python -m training.onboard
  build P`` as a child process, its output in ``P/onboarding/<step>.log``;
  one at a time (409 while one runs); audited as ``onboarding.run``.

Supervisors only (401 / 403 otherwise). POSTs come from the same site and
carry the session's CSRF token, in the ``X-CSRF-Token`` header (JSON) or the
form's ``csrf_token`` field (the pages' forms hold it). Customer text is
escaped everywhere. This module reads and writes the review state only
through `core.onboarding` (the bot never imports `training`).
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.insight.pages import NO_STORE, PAGES, esc
from core.onboarding import (KINDS, STATE_DIR, Candidate, OnboardingProject, Proposal, ReviewError,
                             apply_decision, describe_decision, describe_estimate, flags)
from core.settings import PROJECT_ROOT, get_settings

BASE = "/webhooks/inbox/onboarding"
STEPS = ("discover", "build")
LOG_TAIL_LINES = 40
# The fields a decision may carry (core.onboarding.apply_decision); anything else sent is dropped.
DECISION_FIELDS = ("action", "id", "ids", "name", "examples", "new_id", "example", "to", "text", "kind")
SETUP_HELP = ("Set the onboarding project folder with ASSISTANT_ONBOARDING_DIR (or onboarding_dir in "
              "assistant.yml) and the folder of exported transcripts with ASSISTANT_ONBOARDING_TRANSCRIPTS "
              "(onboarding_transcripts), then restart the assistant.")


class Refused(Exception):
    """A request the page answers with a message and a status (not configured, busy, bad form)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ where


@dataclasses.dataclass(frozen=True)
class Where:
    """The project folder and transcripts folder from the settings ('' when unset)."""

    folder: str
    transcripts: str

    @classmethod
    def from_settings(cls) -> "Where":
        settings = get_settings()
        return cls(settings.onboarding_dir.strip(), settings.onboarding_transcripts.strip())

    def project(self) -> OnboardingProject:
        if not self.folder:
            raise Refused("No onboarding project folder is set. " + SETUP_HELP)
        return OnboardingProject(self.folder)


# ------------------------------------------------------------------ runs of discovery and build


def step_command(step: str, where: Where) -> List[str]:
    """The command line of `step` (discover or build) for the project `where` names."""
    if step not in STEPS:
        raise Refused(f"step must be one of {', '.join(STEPS)}")
    if not where.folder:
        raise Refused("No onboarding project folder is set. " + SETUP_HELP)
    if step == "build":
        return [sys.executable, "-m", "training.onboard", "build", where.folder]
    if not where.transcripts:
        raise Refused("No transcripts folder is set for discovery. " + SETUP_HELP)
    return [sys.executable, "-m", "training.onboard", "--transcripts", where.transcripts, "--out", where.folder]


@dataclasses.dataclass
class Run:
    """One child process running a step, and how it ended."""

    step: str
    log: Path
    started: float
    by: str
    process: subprocess.Popen
    returncode: Optional[int] = None
    finished: Optional[float] = None


class StepRunner:
    """Runs discovery or build as a child process, one at a time, logging under PROJECT/onboarding/."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last: Optional[Run] = None

    def running(self) -> Optional[Run]:
        with self._lock:
            return self.last if self.last is not None and self.last.returncode is None else None

    def start(self, step: str, where: Where, by: str) -> Run:
        """Start `step`; `Refused` (409) while another runs, or when the settings do not allow it."""
        command = step_command(step, where)
        with self._lock:
            if self.last is not None and self.last.returncode is None:
                raise Refused(f"The {self.last.step} step started by {self.last.by} at {_clock(self.last.started)} "
                              f"is still running: wait for it to finish, then try again.", status=409)
            log = Path(where.folder) / STATE_DIR / f"{step}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
            with open(log, "w", encoding="utf-8") as out:
                out.write(f"$ {' '.join(command)}\n")
                out.flush()
                process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            self.last = Run(step, log, time.time(), by, process)
            threading.Thread(target=self._wait, args=(self.last,), daemon=True).start()
            return self.last

    def _wait(self, run: Run) -> None:
        code = run.process.wait()
        with self._lock:
            run.returncode, run.finished = code, time.time()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of the log at `path` ('' when there is none); a progress bar's line shows as it is now."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 64_000))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    shown = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]  # \r redraws a progress bar
    return "\n".join(shown[-lines:]).strip("\n")


def _clock(ts: Optional[float]) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ------------------------------------------------------------------ decisions from forms


def _field(form: Optional[Dict[str, List[str]]], key: str) -> str:
    """The first value of a posted form's field ('' when absent or when the body was JSON)."""
    return ((form or {}).get(key) or [""])[0]


def form_decisions(form: Dict[str, List[str]]) -> List[Dict[str, Any]]:
    """The decisions a posted form stands for (several for a move of several ticked examples)."""

    def one(key: str) -> str:
        return _field(form, key).strip()

    action, cid = one("action"), one("id")
    ticked = [e for e in form.get("examples") or [] if e]
    if action in ("accept", "discard", "reopen"):
        return [{"action": action, "id": cid}]
    if action == "rename":
        return [{"action": action, "id": cid, "name": one("name")}]
    if action == "merge":
        others = [o for o in form.get("with") or [] if o]
        if not others:
            raise ReviewError("choose the candidate to merge into this one")
        return [{"action": action, "ids": [cid, *others], **({"name": one("name")} if one("name") else {})}]
    if action == "split":
        if not ticked:
            raise ReviewError("tick the examples to split off into a new intent")
        return [{"action": action, "id": cid, "examples": ticked, "name": one("name")}]
    if action == "move":
        if not ticked:
            raise ReviewError("tick the examples to move")
        if not one("to"):
            raise ReviewError("choose the candidate to move the examples to")
        return [{"action": action, "example": e, "to": one("to")} for e in ticked]
    if action == "response":
        return [{"action": action, "id": cid, "text": _field(form, "text")}]
    if action == "kind":
        return [{"action": action, "id": cid, "kind": one("kind")}]
    raise ReviewError(f"unknown review action {action!r}")


def json_decisions(body: Any) -> List[Dict[str, Any]]:
    """The one decision a JSON body holds, with only the fields a decision has."""
    if not isinstance(body, dict):
        raise ReviewError("send one decision as a JSON object, e.g. {\"action\": \"accept\", \"id\": \"c1\"}")
    return [{k: body[k] for k in DECISION_FIELDS if k in body}]


def record(project: OnboardingProject, decisions: Sequence[Dict[str, Any]], by: str) -> List[Dict[str, Any]]:
    """Check every decision against the reviewed state first, then record them in order; what was kept."""
    trial = project.reviewed()
    for decision in decisions:
        apply_decision(trial, dict(decision))  # ReviewError here leaves the log untouched
    return [project.decide(decision, by=by) for decision in decisions]


def said(kept: Sequence[Dict[str, Any]]) -> str:
    """What the recorded decisions did, in a sentence for the page."""
    first = kept[0]
    if first["action"] == "move" and len(kept) > 1:
        return f"Moved {len(kept)} example(s) to {first['to']}."
    return describe_decision(first)


# ------------------------------------------------------------------ HTML


def _page(title: str, body: str) -> str:
    text = (PAGES / "onboarding.html").read_text(encoding="utf-8")
    return text.replace("{{title}}", esc(title)).replace("{{body}}", body)


def _hidden(csrf: str, **fields: str) -> str:
    pairs = {"csrf_token": csrf, **fields}
    return "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in pairs.items())


def _button(csrf: str, label: str, back: str, **fields: str) -> str:
    """A one-button form posting the decision `fields` (action, id, ...)."""
    return (f'<form class="inline" method="post" action="{BASE}/decide">{_hidden(csrf, back=back, **fields)}'
            f'<button type="submit">{esc(label)}</button></form>')


def _status_buttons(csrf: str, c: Candidate, back: str) -> str:
    if c.status == "proposed":
        return (_button(csrf, "Accept", back, action="accept", id=c.id) + " "
                + _button(csrf, "Discard", back, action="discard", id=c.id))
    return _button(csrf, "Reopen", back, action="reopen", id=c.id)


def _rename_form(csrf: str, c: Candidate, back: str) -> str:
    return (f'<form class="inline rename" method="post" action="{BASE}/decide">'
            f'{_hidden(csrf, action="rename", id=c.id, back=back)}'
            f'<input name="name" value="{esc(c.name)}" aria-label="new name of {esc(c.id)}" size="18" required> '
            f'<button type="submit">Rename</button></form>')


def _flags(state: Proposal, c: Candidate) -> str:
    return "".join(f'<span class="flag">{esc(f)}</span>' for f in flags(state, c)) or "-"


def _messages(done: str = "", error: str = "") -> str:
    out = ""
    if done:
        out += f'<p class="done" id="done">{esc(done)}</p>'
    if error:
        out += f'<p class="error" id="error">{esc(error)}</p>'
    return out


def _run_section(csrf: str, where: Where, runner: StepRunner) -> str:
    out = ['<section id="run"><h2>Discovery and build</h2>']
    if not where.folder:
        out.append(f'<p id="setup">{esc(SETUP_HELP)}</p></section>')
        return "".join(out)
    out.append(f'<p>Project folder <code>{esc(where.folder)}</code>; transcripts '
               f'{"<code>" + esc(where.transcripts) + "</code>" if where.transcripts else "not set (ASSISTANT_ONBOARDING_TRANSCRIPTS)"}.</p>')
    run = runner.last
    busy = runner.running() is not None
    if run is not None:
        state = (f'running since {_clock(run.started)} (reload the page to follow it)' if busy else
                 f'finished at {_clock(run.finished)} with exit status {run.returncode}'
                 + (" (done)" if run.returncode == 0 else " (failed: see the log)"))
        out.append(f'<p id="run-state">The {esc(run.step)} step started by {esc(run.by)}: {esc(state)}.</p>'
                   f'<pre class="log" id="run-log">{esc(log_tail(run.log))}</pre>')
    else:
        logs = [p for p in (Path(where.folder) / STATE_DIR / f"{s}.log" for s in STEPS) if p.exists()]
        if logs:
            latest = max(logs, key=lambda p: p.stat().st_mtime)
            out.append(f'<p id="run-state">No step is running. The last log, <code>{esc(latest.name)}</code>:</p>'
                       f'<pre class="log" id="run-log">{esc(log_tail(latest))}</pre>')
        else:
            out.append('<p id="run-state">No step is running.</p>')
    disabled = " disabled" if busy else ""
    out.append(f'<form class="inline" id="run-discover" method="post" action="{BASE}/run">{_hidden(csrf, step="discover")}'
               f'<button type="submit"{disabled if where.transcripts else " disabled"}>Discover intents in the transcripts</button></form> '
               f'<form class="inline" id="run-build" method="post" action="{BASE}/run">{_hidden(csrf, step="build")}'
               f'<button type="submit"{disabled}>Build the assistant from the accepted intents</button></form>')
    out.append("</section>")
    return "".join(out)


def list_page(state: Optional[Proposal], where: Where, runner: StepRunner, csrf: str, done: str = "",
              error: str = "") -> str:
    """The candidates of the reviewed state `state` (None: no proposal yet), with their controls."""
    out = ['<h1>Onboarding: candidate intents</h1>', _messages(done, error), _run_section(csrf, where, runner)]
    if state is None:
        return _page("Onboarding", "".join(out))
    counts = {s: sum(1 for c in state.candidates if c.status == s) for s in ("proposed", "accepted", "discarded")}
    read = ", ".join(f"{esc(k)} {esc(v)}" for k, v in state.summary.items())
    out.append(f'<p id="summary">Generation {esc(state.generation)}: {len(state.candidates)} candidates '
               f'({counts["proposed"]} proposed, {counts["accepted"]} accepted, {counts["discarded"]} discarded). '
               f'<span id="estimate">{esc(describe_estimate(state))}</span>'
               + (f' Read: {read}.' if read else "") + '</p>')
    out.append('<table id="candidates"><tr><th>id</th><th>name</th><th>size</th><th>status</th><th>kind</th>'
               '<th>most telling words</th><th>flags</th><th>cohesion</th><th>review</th></tr>')
    for c in state.candidates:
        link = f'{BASE}/c/{urllib.parse.quote(c.id, safe="")}'
        out.append(f'<tr id="cand-{esc(c.id)}"><td>{esc(c.id)}</td><td><a href="{link}">{esc(c.name)}</a></td>'
                   f'<td>{c.size}</td><td class="status-{esc(c.status)}">{esc(c.status)}</td><td>{esc(c.kind)}</td>'
                   f'<td>{esc(", ".join(c.words[:6]))}</td><td>{_flags(state, c)}</td><td>{c.cohesion:.2f}</td>'
                   f'<td>{_status_buttons(csrf, c, "list")} {_rename_form(csrf, c, "list")}</td></tr>')
    out.append("</table>")
    return _page("Onboarding", "".join(out))


def _others(state: Proposal, c: Candidate) -> str:
    return "".join(f'<option value="{esc(o.id)}">{esc(o.id)} {esc(o.name)} ({o.size})</option>'
                   for o in state.candidates if o.id != c.id and o.status != "discarded")


def candidate_page(state: Proposal, c: Candidate, csrf: str, done: str = "", error: str = "") -> str:
    """One candidate of the reviewed state, with every review control."""
    back = "candidate"
    out = [f'<p><a href="{BASE}">All candidates</a></p>',
           f'<h1>{esc(c.name)} <small>({esc(c.id)})</small></h1>', _messages(done, error),
           f'<p id="facts">Status <span class="status-{esc(c.status)}" id="status">{esc(c.status)}</span> · '
           f'{c.size} examples · cohesion {c.cohesion:.2f} · {esc(c.origin)} · flags: {_flags(state, c)}</p>',
           f'<p>{_status_buttons(csrf, c, back)} {_rename_form(csrf, c, back)}</p>',
           f'<p>Most telling words: {esc(", ".join(c.words)) or "-"}</p>']

    others = _others(state, c)
    out.append(f'<section id="examples"><h2>Examples</h2><form id="examples-form" method="post" action="{BASE}/decide">'
               f'{_hidden(csrf, id=c.id, back=back)}<table><tr><th></th><th>id</th><th>request</th><th>from</th></tr>')
    for e in c.examples:
        mark = ' <span class="outlier-mark">outlier</span>' if e.outlier else ""
        out.append(f'<tr class="{"outlier" if e.outlier else "example"}" id="ex-{esc(e.id)}">'
                   f'<td><input type="checkbox" name="examples" value="{esc(e.id)}" aria-label="tick {esc(e.id)}"></td>'
                   f'<td>{esc(e.id)}</td><td>{esc(e.text)}{mark}</td><td class="source">{esc(e.source)}</td></tr>')
    out.append('</table><p>With the ticked examples: '
               '<label>new intent name <input name="name" id="split-name" size="20"></label> '
               '<button type="submit" name="action" value="split" id="split">Split into a new intent</button>')
    if others:
        out.append(f' · <label>move to <select name="to" id="move-to">{others}</select></label> '
                   f'<button type="submit" name="action" value="move" id="move">Move</button>')
    out.append("</p></form></section>")

    out.append(f'<section id="response-section"><h2>Response</h2>'
               f'<form id="response-form" method="post" action="{BASE}/decide">'
               f'{_hidden(csrf, action="response", id=c.id, back=back)}'
               f'<textarea name="text" id="response" aria-label="response of {esc(c.id)}">{esc(c.response)}</textarea>'
               f'<button type="submit">Save the response</button></form>')
    if c.response_alternatives:
        out.append('<p>Other answers the agents gave:</p><ul id="alternatives">' + "".join(
            f'<li>{esc(a)} {_button(csrf, "Use this", back, action="response", id=c.id, text=a)}</li>'
            for a in c.response_alternatives) + "</ul>")
    out.append("</section>")

    options = "".join(f'<option value="{k}"{" selected" if k == c.kind else ""}>{k}</option>' for k in KINDS)
    out.append(f'<section id="kind-section"><h2>Kind: <span id="kind">{esc(c.kind)}</span></h2>'
               f'<p>A question is answered with the response; a task needs a form or a person.</p>'
               f'<ul id="evidence">{"".join(f"<li>{esc(e)}</li>" for e in c.kind_evidence) or "<li>no evidence recorded</li>"}</ul>'
               f'<form method="post" action="{BASE}/decide">{_hidden(csrf, action="kind", id=c.id, back=back)}'
               f'<select name="kind" aria-label="kind">{options}</select> <button type="submit">Set the kind</button></form></section>')

    out.append('<section id="entities"><h2>Entity-looking spans</h2>')
    if c.entity_spans:
        out.append("<table><tr><th>kind</th><th>text</th><th>seen</th></tr>" + "".join(
            f'<tr><td>{esc(s.get("kind"))}</td><td>{esc(s.get("text"))}</td><td>{esc(s.get("count", 1))}</td></tr>'
            for s in c.entity_spans) + "</table>")
    else:
        out.append('<p class="empty">None found in these examples.</p>')
    out.append("</section>")

    if others:
        out.append(f'<section id="merge-section"><h2>Merge</h2><form id="merge-form" method="post" action="{BASE}/decide">'
                   f'{_hidden(csrf, action="merge", id=c.id, back=back)}'
                   f'<label>Merge <select name="with" id="merge-with">{others}</select> into this one</label> '
                   f'<label>as <input name="name" id="merge-name" placeholder="{esc(c.name)}" size="20"></label> '
                   f'<button type="submit" id="merge">Merge</button></form></section>')
    return _page(f"Onboarding · {c.name}", "".join(out))


def not_found_page(candidate_id: str) -> str:
    return _page("Candidate not found", f'<h1>Candidate not found</h1><p id="error" class="error">No candidate intent '
                                        f'<code>{esc(candidate_id)}</code> in this project.</p>'
                                        f'<p><a href="{BASE}">All candidates</a></p>')


# ------------------------------------------------------------------ routes


def _reviewed(where: Where) -> Tuple[Optional[Proposal], str]:
    """(reviewed state or None, the problem in words when there is none)."""
    if not where.folder:
        return None, ""
    project = OnboardingProject(where.folder)
    if not project.exists():
        return None, f"No proposal yet in {where.folder}: run discovery below (or python -m training.onboard)."
    try:
        return project.reviewed(), ""
    except ReviewError as exc:
        return None, str(exc)


def _posted(request: Request) -> Tuple[bool, Any]:
    """(is JSON, the JSON body or the form's fields as lists)."""
    if (request.content_type or "").startswith("application/json"):
        try:
            return True, request.json
        except Exception:  # Sanic raises its own error for a body that is not JSON
            raise ReviewError("the body is not valid JSON") from None
    if request.form is None:
        raise ReviewError("send a form or a JSON object")
    return False, {k: list(v) for k, v in request.form.items()}


def register(inbox, channel) -> None:
    """Add the onboarding page to the inbox blueprint `inbox`, guarded by `channel.staff_only` (an `AgentInbox`)."""
    runner = StepRunner()

    def refused_csrf(request: Request, session, form: Optional[Dict[str, List[str]]]) -> Optional[str]:
        """The inbox's same-site and CSRF check, taking the token from the header or else the form's field."""
        sent = request.headers.get("x-csrf-token") or _field(form, "csrf_token")
        return channel._csrf_problem(request, session, sent)

    def reply(is_json: bool, status: int, html_page: str, payload: Dict[str, Any]) -> HTTPResponse:
        if is_json:
            return response.json(payload, status=status, headers=NO_STORE)
        return response.html(html_page, status=status, headers=NO_STORE)

    def checked_post(request: Request, session) -> Tuple[bool, Any, Optional[Dict[str, List[str]]],
                                                         Optional[HTTPResponse]]:
        """(is JSON, what was posted, the form's fields or None, a 403 reply when the same-site/CSRF check fails)."""
        is_json, posted = _posted(request)
        form = None if is_json else posted
        problem = refused_csrf(request, session, form)
        refusal = reply(is_json, 403, _page("Refused", f'<p class="error" id="error">{esc(problem)}</p>'),
                        {"error": problem}) if problem else None
        return is_json, posted, form, refusal

    async def error_page(is_json: bool, message: str, status: int, session, back: str, cid: str) -> HTTPResponse:
        where = Where.from_settings()
        state, _ = await asyncio.get_running_loop().run_in_executor(None, _reviewed, where)
        if state is not None and back == "candidate" and cid in {c.id for c in state.candidates}:
            html_page = candidate_page(state, state.candidate(cid), session.csrf_token, error=message)
        else:
            html_page = list_page(state, where, runner, session.csrf_token, error=message)
        return reply(is_json, status, html_page, {"error": message})

    @inbox.route("/onboarding", methods=["GET"])
    @channel.staff_only("supervisor")
    async def onboarding(request: Request, session) -> HTTPResponse:
        where = Where.from_settings()
        state, problem = await asyncio.get_running_loop().run_in_executor(None, _reviewed, where)
        return response.html(list_page(state, where, runner, session.csrf_token, done=request.args.get("done", ""),
                                       error=problem), headers=NO_STORE)

    @inbox.route("/onboarding/c/<candidate_id:str>", methods=["GET"])
    @channel.staff_only("supervisor")
    async def candidate(request: Request, session, candidate_id: str) -> HTTPResponse:
        candidate_id = urllib.parse.unquote(candidate_id)[:64]
        state, problem = await asyncio.get_running_loop().run_in_executor(None, _reviewed, Where.from_settings())
        if state is None:
            return response.html(list_page(None, Where.from_settings(), runner, session.csrf_token,
                                           error=problem or "No onboarding project folder is set. " + SETUP_HELP),
                                 status=404, headers=NO_STORE)
        if candidate_id not in {c.id for c in state.candidates}:
            return response.html(not_found_page(candidate_id), status=404, headers=NO_STORE)
        return response.html(candidate_page(state, state.candidate(candidate_id), session.csrf_token,
                                            done=request.args.get("done", "")), headers=NO_STORE)

    @inbox.route("/onboarding/decide", methods=["POST"])
    @channel.staff_only("supervisor")
    async def decide(request: Request, session) -> HTTPResponse:
        is_json, form = False, None
        try:
            is_json, posted, form, refusal = checked_post(request, session)
            if refusal is not None:
                return refusal
            decisions = json_decisions(posted) if is_json else form_decisions(posted)
            project = Where.from_settings().project()
            kept = await asyncio.get_running_loop().run_in_executor(None, record, project, decisions, session.username)
        except (ReviewError, Refused) as exc:
            return await error_page(is_json, str(exc), getattr(exc, "status", 400), session, _field(form, "back"),
                                    _field(form, "id"))
        for k in kept:
            detail = {key: value for key, value in k.items() if key not in ("text", "by", "action")}
            if "text" in k:
                detail["chars"] = len(k["text"])
            channel._audit(request, session, f"onboarding.{k['action']}", k.get("id") or k.get("example"), detail)
        if is_json:
            return response.json({"decisions": kept}, headers=NO_STORE)
        target, cid = BASE, _field(form, "id")
        if _field(form, "back") == "candidate" and cid:
            target = f"{BASE}/c/{urllib.parse.quote(cid, safe='')}"
        return response.redirect(f"{target}?{urllib.parse.urlencode({'done': said(kept)})}", status=303)

    @inbox.route("/onboarding/run", methods=["POST"])
    @channel.staff_only("supervisor")
    async def run(request: Request, session) -> HTTPResponse:
        is_json = False
        try:
            is_json, posted, _form, refusal = checked_post(request, session)
            if refusal is not None:
                return refusal
            step = str((posted or {}).get("step", "")) if is_json else _field(posted, "step")
            started = runner.start(step, Where.from_settings(), session.username)
        except (ReviewError, Refused, OSError) as exc:
            message = f"cannot start the step: {exc}" if isinstance(exc, OSError) else str(exc)
            return await error_page(is_json, message, getattr(exc, "status", 400), session, "list", "")
        channel._audit(request, session, "onboarding.run", Where.from_settings().folder,
                       {"step": started.step, "log": str(started.log)})
        if is_json:
            return response.json({"step": started.step, "log": str(started.log), "started": started.started},
                                 status=202, headers=NO_STORE)
        message = f"The {started.step} step is running; reload this page to follow its log."
        return response.redirect(f"{BASE}?{urllib.parse.urlencode({'done': message})}", status=303)
