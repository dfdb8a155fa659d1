"""The release marker: which models every serving process should serve now.

    release = publish(parts={"intent": ..., "index": ..., "recommender": ...},
                      rasa_model="models/20261203-...tar.gz", action="promote", gate={...})
    current = read()          # the Release in force, or None before the first promotion

`training.retrain` is the one writer: after it has moved the promoted folders
into place (or rolled them back) it writes ``release.json`` in the model
folder (``model_dir`` setting), atomically, last. Serving processes poll that
file (`core.hotswap`) and, when its ``version`` changes, load the parts it
names beside the old ones and switch; a process that cannot load them keeps
serving what it had and says so on ``/health``.

A release names:

- ``version``: unique per promotion or rollback (time and a random suffix);
- ``parts``: for each part promoted (``intent``, ``index``, ``recommender``)
  the folder now live, as written at promotion;
- ``rasa_model``: the Rasa model archive the Rasa servers load (None: keep
  the one they serve);
- ``action``: ``promote`` or ``rollback``; ``gate``: the gate's figures;
- ``previous``: the version this one replaced.
"""
from __future__ import annotations

import dataclasses
import json
import secrets
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

from core.files import write_text_atomically
from core.settings import PROJECT_ROOT

RELEASE_FILE = "release.json"


class ReleaseFileError(ValueError):
    """release.json exists but cannot be read as a release (the message names the file)."""


@dataclasses.dataclass(frozen=True)
class Release:
    version: str
    promoted_at: float
    action: str = "promote"
    parts: Dict[str, str] = dataclasses.field(default_factory=dict)
    rasa_model: Optional[str] = None
    gate: Dict[str, Any] = dataclasses.field(default_factory=dict)
    previous: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def release_path(model_dir: Union[str, Path, None] = None) -> Path:
    """Where the release marker of `model_dir` (default: the ``model_dir`` setting) lives."""
    if model_dir is None:
        from core.settings import get_settings

        model_dir = get_settings().model_dir
    return Path(model_dir) / RELEASE_FILE


def new_version(now: Optional[float] = None) -> str:
    """A version id that sorts by time and never repeats: ``20261203-142501-3fa9``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now or time.time())) + "-" + secrets.token_hex(2)


def read(model_dir: Union[str, Path, None] = None) -> Optional[Release]:
    """The release in force, or None when nothing was ever promoted; `ReleaseFileError` when the file is broken."""
    path = release_path(model_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReleaseFileError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(Release)}
        return Release(**{k: v for k, v in data.items() if k in fields})
    except (ValueError, TypeError) as exc:
        raise ReleaseFileError(f"{path} is not a release marker ({exc})") from exc


def publish(parts: Dict[str, Union[str, Path]], rasa_model: Union[str, Path, None] = None, action: str = "promote",
            gate: Optional[Dict[str, Any]] = None, model_dir: Union[str, Path, None] = None,
            version: Optional[str] = None) -> Release:
    """Write the new release marker (atomically) and return it; the serving processes switch to it."""
    path = release_path(model_dir)
    try:
        before = read(model_dir)
    except ReleaseFileError:
        before = None
    release = Release(
        version=version or new_version(), promoted_at=time.time(), action=action,
        parts={name: str(folder) for name, folder in parts.items()},
        rasa_model=str(rasa_model) if rasa_model else None, gate=dict(gate or {}),
        previous=before.version if before else None,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(release.as_dict(), indent=2, sort_keys=True))
    return release


def archive_path(rasa_model: str) -> Path:
    """The archive a release names: an absolute path, or one relative to the project (the servers' working folder)."""
    path = Path(rasa_model)
    return path if path.is_absolute() else PROJECT_ROOT / path
