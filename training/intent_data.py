"""Reading labelled utterances: Rasa NLU YAML or a `text,label` CSV."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Tuple

from core.records import RecordError, csv_columns, read_csv

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "intent", "category")


class DataFileError(ValueError):
    """A data file cannot be read at all (missing, wrong format, no usable rows)."""


def read_examples(path: Path) -> Tuple[List[str], List[str], List[str]]:
    """(texts, labels, problems) from a Rasa NLU YAML file/folder or a CSV.

    CSV files need a `text` column and one of `label`, `intent`, `category`;
    rows with an empty text or label are skipped and reported by line number
    in `problems`. Retrieval intents (`faq/...`) keep their full name.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"data file '{path}' does not exist")
    if path.is_dir() or path.suffix in (".yml", ".yaml"):
        return _read_rasa(path)
    if path.suffix == ".csv":
        return _read_csv(path)
    raise DataFileError(f"'{path}': expected Rasa NLU YAML (.yml/.yaml or a folder) or a .csv file")


def _read_csv(path: Path) -> Tuple[List[str], List[str], List[str]]:
    texts, labels, problems = [], [], []
    columns = csv_columns(path)
    label_col = next((c for c in LABEL_COLUMNS if c in columns), None)
    if "text" not in columns or label_col is None:
        raise DataFileError(f"'{path}' needs a 'text' column and one of {LABEL_COLUMNS}; found {columns}")
    for line, row in read_csv(path, required=("text", label_col), errors="yield"):
        if isinstance(row, RecordError):
            problems.append(f"{row}, skipped")
            continue
        text, label = row["text"].strip(), row[label_col].strip()
        if not text or not label:
            problems.append(f"{path}:{line}: empty text or label, skipped")
            continue
        texts.append(text)
        labels.append(label)
    if not texts:
        raise DataFileError(f"'{path}' has no usable rows")
    return texts, labels, problems


def _read_rasa(path: Path) -> Tuple[List[str], List[str], List[str]]:
    from rasa.shared.importers.importer import TrainingDataImporter
    from rasa.shared.exceptions import YamlException

    try:
        data = TrainingDataImporter.load_from_dict(training_data_paths=[str(path)]).get_nlu_data()
    except YamlException as exc:
        raise DataFileError(f"'{path}' is not valid Rasa NLU YAML: {exc}") from exc
    texts = [m.get("text") for m in data.intent_examples]
    labels = [m.get_full_intent() for m in data.intent_examples]
    if not texts:
        raise DataFileError(f"'{path}' holds no intent examples")
    return texts, labels, []
