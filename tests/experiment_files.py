"""A temporary bot/experiments.yml for tests: written, made the one in force, forgotten afterwards."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import yaml

from bot.insight import experiments
from core.settings import get_settings


def use_experiments(monkeypatch, folder: Path, declared: List[Dict[str, Any]]) -> Path:
    """Write `declared` as the experiments file in `folder` and make it the one this process reads.

    Undone when `monkeypatch` is: call `experiments.reset_experiments()` in the fixture's teardown.
    """
    path = Path(folder) / "experiments.yml"
    path.write_text(yaml.safe_dump({"experiments": declared}, sort_keys=False))
    monkeypatch.setenv("ASSISTANT_EXPERIMENTS_FILE", str(path))
    get_settings.cache_clear()
    experiments.reset_experiments()
    return path
