"""`nlu.importer.CheckedFileImporter`: Rasa's file importer that checks entity annotations first.

Name it in config.yml (Rasa's own extension point for importers):

    importers:
      - name: nlu.importer.CheckedFileImporter

Before Rasa reads the NLU files, each annotated example is checked
(`nlu.entities.check_annotations`): an entity type the domain does not
declare, a role the domain does not list for its entity, a span outside its
example or over blank text, and overlapping spans (possible in Rasa's JSON
format) stop `rasa train` and `rasa test` with an error naming the file, the
line and the example, before anything trains, so no half-written model is
left. Rasa itself warns about some of these and trains anyway.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Text, Tuple

from rasa.shared.exceptions import RasaException
from rasa.shared.importers.rasa import RasaFileImporter
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu.entities import EntityAnnotationError, check_annotations


class InvalidNLUData(RasaException, EntityAnnotationError):
    """A broken entity annotation in an NLU file; Rasa's command line prints it without a traceback."""


class CheckedFileImporter(RasaFileImporter):
    """`RasaFileImporter` whose NLU data is checked against the domain, with file and line in each error."""

    def get_nlu_data(self, language: Optional[Text] = "en") -> TrainingData:
        domain = self.get_domain()
        known = set(domain.entities) if domain.entities else None
        roles = {name: set(r) for name, r in domain.entity_properties.roles.items() if r}
        for path in self._nlu_files:
            try:
                check_nlu_file(Path(path), known, roles)
            except EntityAnnotationError as exc:
                raise InvalidNLUData(str(exc)) from exc
        return super().get_nlu_data(language)


def check_nlu_file(path: Path, known_types: Optional[Set[str]] = None, roles: Optional[Dict[str, Set[str]]] = None) -> int:
    """Check every annotated example of one Rasa NLU file (YAML or JSON); the number of examples checked.
    Raises `EntityAnnotationError` with `path:line` and the example."""
    roles = roles or {}
    checked = 0
    for line, text, annotations in _examples(path):
        where = f"{path}:{line}"
        check_annotations(text, annotations, where, known_types)
        for annotation in annotations:
            role, allowed = annotation.get("role"), roles.get(annotation["entity"])
            if role is not None and allowed is not None and role not in allowed:
                raise EntityAnnotationError(
                    f"{where}: role {role!r} of entity {annotation['entity']!r} is not among the roles the domain "
                    f"lists for it ({sorted(allowed)}), in example {text!r}")
        checked += 1
    return checked


def _examples(path: Path) -> Iterator[Tuple[int, str, List[Dict[str, Any]]]]:
    """(line, plain text, entity annotations) of each example in a Rasa NLU file."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        yield from _json_examples(path, raw)
    elif path.suffix in (".yml", ".yaml"):
        yield from _yaml_examples(path, raw)


def _yaml_examples(path: Path, raw: str) -> Iterator[Tuple[int, str, List[Dict[str, Any]]]]:
    from rasa.shared.nlu.training_data import entities_parser
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        document = YAML(typ="rt").load(raw)
    except YAMLError as exc:
        raise EntityAnnotationError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("nlu"), list):
        return
    for item in document["nlu"]:
        if not isinstance(item, dict) or "intent" not in item or not isinstance(item.get("examples"), str):
            continue
        first = item.lc.value("examples")[0] + 2  # the block's first line (1-based, after `examples: |`)
        for offset, entry in enumerate(item["examples"].split("\n")):
            example = entry.strip()
            if not example.startswith("-"):
                continue
            example = example[1:].strip()
            where = f"{path}:{first + offset}"
            try:
                annotations = entities_parser.find_entities_in_training_example(example)
            except Exception as exc:  # Rasa's own error for malformed markup JSON
                raise EntityAnnotationError(f"{where}: malformed entity markup in {example!r} ({exc})") from exc
            if annotations:
                yield first + offset, entities_parser.replace_entities(example), annotations


def _json_examples(path: Path, raw: str) -> Iterator[Tuple[int, str, List[Dict[str, Any]]]]:
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EntityAnnotationError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    examples = (document.get("rasa_nlu_data") or {}).get("common_examples") if isinstance(document, dict) else None
    lines = raw.split("\n")
    for example in examples or []:
        if not isinstance(example, dict) or not example.get("entities"):
            continue
        text = str(example.get("text", ""))
        needle = json.dumps(text)
        line = next((n for n, content in enumerate(lines, start=1) if needle in content), 0)
        yield line, text, list(example["entities"])
