"""No secrets in the repository: every committed file is scanned for things that look like one.

Secrets (Slack, Telegram and API tokens, the inbox password, database
passwords) come from the environment only (README, docs/security.md). This
test reads every file `git ls-files` lists and fails, naming file and line,
on a private key, a provider token (Slack, Telegram, GitHub, AWS, Google),
a JWT, a URL with a password, or an assignment of a literal value to a
name such as ``password``, ``secret``, ``token`` or ``api_key``.

Values that are obviously not real are allowed: anything containing
``test``, ``example``, ``dummy``, ``fake``, ``placeholder``, ``changeme``,
``not-our``, ``xxx`` or ``…``; references to the environment
(``${VAR}``, ``os.environ``, ``<...>``); and the few lines listed in
`ALLOWED` with the reason.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest

from core.settings import PROJECT_ROOT

PROVIDER_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY-----"),
    "Slack token": re.compile(r"\bxox[abposr]-[0-9A-Za-z-]{10,}"),
    "Slack webhook": re.compile(r"hooks\.slack\.com/services/T[0-9A-Z]+/B[0-9A-Z]+/[0-9A-Za-z]+"),
    "Telegram bot token": re.compile(r"\b\d{8,10}:[A-Za-z0-9_-]{35}\b"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    "URL with a password": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^/\s@'\"]+)@"),
}
ASSIGNMENT = re.compile(
    r"""(?ix)
    \b([a-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?))\b
    ["']?\s*(?:=|:)\s*
    (?:["']([^"'\s]{6,})["']|([A-Za-z0-9+/_\-.=]{12,})(?=\s|$|,))
    """
)
NOT_REAL = re.compile(
    r"(?i)test|example|dummy|fake|placeholder|changeme|change-me|not-our|xxx|…|\.\.\.|<[^>]*>|\$\{|\$[A-Z_]+|"
    r"os\.environ|getenv|your[_-]|redacted|\[secret\]|none|null|true|false|required|optional|secret_key_base"
)
# (path, text on the line) that look like secrets but are not, with the reason.
ALLOWED: List[Tuple[str, str]] = [
    ("tests/test_logs.py", "password=hunter2"),  # a made-up credential the log scrubber must hide
]
# Words used as the password in documented URL shapes (postgresql://user:pw@host/db).
PLACEHOLDER_PASSWORDS = {"pw", "pwd", "pass", "password", "secret", "passwd"}
TEXT_SUFFIXES = {
    ".py", ".yml", ".yaml", ".json", ".jsonl", ".md", ".txt", ".cfg", ".ini", ".toml", ".env", ".sh", ".js",
    ".ts", ".html", ".css", ".conf", ".csv", "",
}


def committed_files() -> List[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [PROJECT_ROOT / name for name in listed.decode().split("\0") if name]


def findings_in(path: Path, text: str) -> List[str]:
    found = []
    relative = path.relative_to(PROJECT_ROOT).as_posix()
    for number, line in enumerate(text.splitlines(), start=1):
        if any(relative == p and snippet in line for p, snippet in ALLOWED):
            continue
        for what, pattern in PROVIDER_PATTERNS.items():
            match = pattern.search(line)
            if match and not NOT_REAL.search(match.group(0)) and not (
                what == "URL with a password" and match.group(1).lower() in PLACEHOLDER_PASSWORDS
            ):
                found.append(f"{relative}:{number}: {what}")
        for match in ASSIGNMENT.finditer(line):
            value = match.group(2) or match.group(3)
            if NOT_REAL.search(value) or NOT_REAL.search(line[max(0, match.start() - 40):match.end() + 40]):
                continue
            if re.fullmatch(r"[a-z_][a-z0-9_.]*(?:\(\)?)?", value) or value.isdigit():
                continue  # a name (settings.api_token, get_token()), not a literal secret
            if not (re.search(r"\d", value) and re.search(r"[A-Za-z]", value)):
                continue  # a real secret mixes letters and digits; a word ("required", "HS256" aside) does not
            found.append(f"{relative}:{number}: {match.group(1)} = {value[:4]}…")
    return found


def test_no_committed_file_holds_a_secret():
    problems = []
    for path in committed_files():
        if path.suffix.lower() not in TEXT_SUFFIXES or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        problems += findings_in(path, text)
    assert not problems, "secrets in committed files (move them to the environment):\n" + "\n".join(problems)


# Made-up secrets, assembled at run time so that this file does not hold them literally.
PLANTED = [
    "SLACK_TOKEN=" + "xox" + "b-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
    "token: 1234567890" + ":AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1",
    "url = 'postgresql://assistant" + ":S3cr3tPassw0rd@db.internal:5432/assistant'",
    'INBOX_OIDC_CLIENT_SECRET = "c0rrect' + '-h0rse-battery"',
    "api_key: 9f8e7d6c5b4a" + "39281706f5e4d3c2b1a0",
    "-----BEGIN RSA " + "PRIVATE KEY-----",
    "aws = AKIA" + "IOSFODNN7ABCDEFG",
]


@pytest.mark.parametrize("line", PLANTED)
def test_the_scanner_finds_secrets(line):
    assert findings_in(PROJECT_ROOT / "settings.yml", line)


@pytest.mark.parametrize(
    "line",
    [
        'client_secret=secret(credentials, "client_secret", "INBOX_OIDC_CLIENT_SECRET"),',
        '"SLACK_TOKEN": "xoxb-test-token",',
        "ASSISTANT_DATABASE_URL=postgresql://user@host/db",
        "token = os.environ.get('RASA_API_TOKEN')",
        "password: ${ASSISTANT_TRACKER_STORE_PASSWORD}",
        "secret_token = self.secret_token",
        "the Telegram token is read from TELEGRAM_TOKEN",
    ],
)
def test_the_scanner_leaves_references_and_test_values_alone(line):
    assert findings_in(PROJECT_ROOT / "settings.yml", line) == []
