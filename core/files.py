"""Files the assistant rewrites in place (spools, exports, profiles), written so a crash never leaves half a file."""
from __future__ import annotations

from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to a hidden file beside `path`, then rename it over `path` (one step on POSIX)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
