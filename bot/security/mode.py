"""The assistant's mode, and what production mode refuses to start without.

Modes (setting ``env``, environment variable ``ASSISTANT_ENV``):

- ``local`` (the default): safe defaults; whatever lacks its secret is off
  (REST refuses everyone without a caller credential, the widget is
  anonymous-only without a token key, Rasa's HTTP API is off without
  ``RASA_API_TOKEN``, the action server answers nobody without
  ``ACTION_SERVER_SECRET``, the inbox lets nobody in without accounts).
- ``demo``: what `make run` starts (`python -m bot.serve --demo`); relaxes
  what `DEMO_RELAXATIONS` says, and the launcher prints that list.
- ``production``: the launcher, the Rasa server and the action server each
  refuse to start while `production_problems` finds anything missing or weak.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Mapping, Optional

MODES = ("local", "demo", "production")
MIN_SECRET_CHARS = 32

# Values from the project's docs, tests and examples: never a production secret.
KNOWN_DEMO_VALUES = frozenset({
    "test-api-token", "test-agent-password", "test-signing-secret", "test-telegram-secret",
    "changeme", "change-me", "secret", "password", "demo", "example", "token",
})

# What demo mode relaxes, as the launcher prints it (docs/security.md says the same).
DEMO_RELAXATIONS = (
    "REST is open: any sender may post to /webhooks/rest/webhook without a credential (as caller 'demo')",
    "the demo page /webhooks/web/?customer=<id> signs in as that customer (a random per-process demo key)",
    "a demo inbox admin account is created, its random password printed below",
)

# The parts `production_problems` checks; a server checks only the ones it uses.
CHECKS = ("widget", "rest", "api", "inbox", "action_server")


class ModeError(ValueError):
    """ASSISTANT_ENV holds something that is not a mode."""


class ProductionRefused(RuntimeError):
    """Production mode without every secret: the message lists each problem."""

    exit_code = 78  # EX_CONFIG: what a server that refuses exits with


def mode_from(value: Optional[str]) -> str:
    """`value` (ASSISTANT_ENV or the ``env`` setting) as a mode; raises `ModeError` naming the choices."""
    mode = (value or "local").strip().lower()
    if mode not in MODES:
        raise ModeError(f"ASSISTANT_ENV must be one of {', '.join(MODES)}; got {value!r}")
    return mode


def current_mode() -> str:
    """This process's mode: ``local``, ``demo`` or ``production`` (raises `ModeError` for anything else)."""
    from core.settings import get_settings

    return mode_from(get_settings().env)


def _weak(value: str) -> Optional[str]:
    """Why a secret is weak, or None."""
    if value.lower() in KNOWN_DEMO_VALUES or value.lower().startswith(("test-", "demo-")):
        return "a known demo or test value"
    if len(value) < MIN_SECRET_CHARS:
        return f"shorter than {MIN_SECRET_CHARS} characters"
    if len(set(value)) < 8:
        return "too few distinct characters"
    return None


def _secret_problem(env: Mapping[str, str], name: str, what: str) -> Optional[str]:
    value = (env.get(name) or "").strip()
    if not value:
        return f"{name} is not set ({what})"
    why = _weak(value)
    return f"{name} is weak: {why} ({what})" if why else None


def _widget_problem(env: Mapping[str, str]) -> Optional[str]:
    pem = (env.get("WEB_CUSTOMER_TOKEN_PUBLIC_KEY") or "").strip()
    if pem:
        from bot.security.tokens import _public_key_algorithm

        try:
            _public_key_algorithm(pem.replace("\\n", "\n"))
        except ValueError as exc:
            return f"{exc} (the widget's customer token key)"
        return None
    what = "the widget's customer token key; or set WEB_CUSTOMER_TOKEN_PUBLIC_KEY"
    return _secret_problem(env, "WEB_CUSTOMER_TOKEN_SECRET", what)


def _engine(env: Mapping[str, str]):
    from core import db
    from core.settings import load_settings

    return db.connect(load_settings(environ=dict(env)).database_url)


def _rest_problems(env: Mapping[str, str]) -> List[str]:
    from bot.security.callers import CallerRegistry, parse_caller_tokens

    try:
        tokens = parse_caller_tokens(env.get("REST_CALLER_TOKENS", ""))
    except ValueError as exc:
        return [str(exc)]
    problems = []
    for name, token in tokens.items():
        why = _weak(token)
        if why:
            problems.append(f"REST_CALLER_TOKENS: the token of caller '{name}' is weak: {why}")
    if not tokens:
        try:
            stored = CallerRegistry(environ={}, engine=_engine(env)).configured
        except Exception as exc:  # the database is down or unreadable: say so, do not start
            return [f"REST callers: cannot read the api_callers table ({exc})"]
        if not stored:
            problems.append(
                "no REST caller credential: set REST_CALLER_TOKENS (name=token, tokens of 32+ characters) "
                "or add one with `python -m bot.security.admin rest-caller add NAME`"
            )
    return problems


def _inbox_problems(env: Mapping[str, str]) -> List[str]:
    oidc = [name for name in ("INBOX_OIDC_ISSUER", "INBOX_OIDC_CLIENT_ID", "INBOX_OIDC_CLIENT_SECRET") if (env.get(name) or "").strip()]
    if len(oidc) == 3:
        return []
    if oidc:
        missing = {"INBOX_OIDC_ISSUER", "INBOX_OIDC_CLIENT_ID", "INBOX_OIDC_CLIENT_SECRET"} - set(oidc)
        return [f"inbox sign-in through OpenID Connect is half configured: {', '.join(sorted(missing))} not set"]
    try:
        from bot.security.staff import active_account_count
    except ImportError:
        return ["no inbox accounts: staff accounts (bot/security/staff.py) are not available in this build"]
    try:
        count = active_account_count(_engine(env))
    except Exception as exc:  # the database is down or unreadable: say so, do not start
        return [f"inbox accounts: cannot read the staff accounts ({exc})"]
    if not count:
        return [
            "no inbox accounts: add one with `python -m bot.security.admin agent add NAME --role admin` "
            "or configure INBOX_OIDC_ISSUER, INBOX_OIDC_CLIENT_ID and INBOX_OIDC_CLIENT_SECRET"
        ]
    return []


def production_problems(env: Mapping[str, str], checks: Iterable[str] = CHECKS) -> List[str]:
    """Every missing or weak secret production mode refuses to start with, one sentence each ([] = none).

    `env` is the environment the servers get. `checks` narrows the list to
    the parts one server uses (the action server checks only its secret).
    """
    checks = set(checks)
    problems: List[str] = []
    if "widget" in checks:
        problems += [p for p in [_widget_problem(env)] if p]
    if "rest" in checks:
        problems += _rest_problems(env)
    if "api" in checks:
        problem = _secret_problem(env, "RASA_API_TOKEN", "Rasa's HTTP API token")
        problems += [problem] if problem else []
    if "inbox" in checks:
        problems += _inbox_problems(env)
    if "action_server" in checks:
        problem = _secret_problem(env, "ACTION_SERVER_SECRET", "the secret Rasa shows the action server")
        problems += [problem] if problem else []
    return problems


def refusal(problems: List[str], who: str) -> str:
    """The message a server that refuses to start prints."""
    lines = "\n".join(f"  - {p}" for p in problems)
    return (f"{who} refuses to start in production mode (ASSISTANT_ENV=production):\n{lines}\n"
            "Set every secret in the environment (docs/deployment.md), or run outside production mode.")


def refuse_unsafe_start(who: str, checks: Iterable[str] = CHECKS, env: Optional[Mapping[str, str]] = None) -> str:
    """The mode of this process; raises `ProductionRefused` naming every problem in production."""
    env = os.environ if env is None else env
    mode = mode_from(env.get("ASSISTANT_ENV") or _settings_env())
    if mode == "production":
        problems = production_problems(env, checks)
        if problems:
            raise ProductionRefused(refusal(problems, who))
    return mode


def _settings_env() -> str:
    from core.settings import get_settings

    return get_settings().env
