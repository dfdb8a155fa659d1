"""Files and folders the assistant rewrites in place (spools, exports, profiles, model folders),
written so a crash never leaves half a file or half a folder."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Union


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to a hidden file beside `path`, then rename it over `path` (one step on POSIX)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


@contextlib.contextmanager
def replacing_folder(folder: Union[str, os.PathLike]) -> Iterator[Path]:
    """An empty hidden folder beside `folder` to write into; when the block ends, it becomes `folder`.

    The old `folder` (if any) is renamed aside, the new one renamed into its
    place and the old one deleted, so a reader finds the whole old folder or
    the whole new one (or, for the instant between the two renames, none).
    When the block raises, what was written is deleted and `folder` is left
    as it was. The new folder is private to its owner (mkdtemp's 0700): an
    answer index or a recommender holds customers' questions and histories.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-new-", dir=folder.parent))
    try:
        yield staging
        aside = folder.with_name(f".{folder.name}-old-{os.getpid()}-{threading.get_ident()}")
        if aside.exists():
            shutil.rmtree(aside)
        moved = folder.exists()
        if moved:
            folder.rename(aside)
        try:
            staging.rename(folder)
        except OSError:
            if moved:
                aside.rename(folder)
            raise
        if moved:
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
