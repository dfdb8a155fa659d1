"""The one writer of the audit log (``audit_log``): who did what to which thing, when.

It only appends: there is no call here that changes or removes a row, and
the database refuses UPDATE and DELETE on the table with a trigger
(migration v3), so a row once written stays as written. It lives in core so
that every package may write through it (`bot` for people's actions,
`training` for model releases); `bot.security.audit` re-exports `record`
beside the readers (`recent`, `export`) the inbox uses.

Actions recorded (``action`` column):

- ``signin``, ``signin.failed`` (wrong password, unknown or disabled account,
  refused OIDC answer), ``signin.locked`` (refused during a lockout), ``signout``;
- ``conversation.open`` (a transcript and profile shown), ``conversation.take``,
  ``conversation.reply``, ``conversation.handback``;
- ``account.add``, ``account.disable``, ``account.reset``, ``account.password``;
- ``audit.export``;
- ``customer.open`` (a supervisor opened a customer page, `bot.insight.pages`; detail ``found``);
- ``onboarding.<action>`` (a supervisor's review decision on the onboarding page, `bot.insight.onboarding_page`:
  accept, discard, reopen, rename, merge, split, move, response, kind; target the candidate or example; detail the
  decision, a response's length instead of its text), ``onboarding.run`` (discovery or build started; detail ``step``);
- ``model.retrain`` (candidates built and scored, `training.retrain`; detail: parts, gate figures),
  ``model.promote`` and ``model.refuse`` (the gate's decision; detail: release version, parts, gate figures),
  ``model.rollback`` (the previous release put back; detail: the versions left and restored);
- ``model.reload`` and ``model.reload.failed`` (a serving process switched to a release, or could not;
  `core.hotswap`; actor ``rasa@host:pid`` or ``actions@host:pid``; detail: versions, seconds or error).
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

from sqlalchemy.engine import Engine

from core import db


def record(
    engine: Engine,
    actor: str,
    action: str,
    target: Optional[str] = None,
    client: Optional[str] = None,
    detail: Optional[Dict[str, Any]] = None,
) -> None:
    """Append one row: `actor` (a username, or what was typed for a failed sign-in) did `action` to `target`."""
    with engine.begin() as conn:
        conn.execute(
            db.audit_log.insert().values(
                ts=time.time(),
                actor=(actor or "?")[:128],
                action=action[:64],
                target=None if target is None else str(target)[:256],
                client=None if client is None else str(client)[:64],
                detail=detail or {},
            )
        )
