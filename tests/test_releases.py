"""The release marker: written whole, read back, versions unique and chained, a broken file named."""
import json

import pytest

from core import releases


def test_nothing_promoted_yet_reads_as_none(tmp_path):
    assert releases.read(tmp_path) is None


def test_a_published_release_reads_back_and_names_the_one_it_replaced(tmp_path):
    first = releases.publish({"intent": tmp_path / "intent"}, rasa_model=tmp_path / "m1.tar.gz", gate={"intent": {"accuracy": 0.9}},
                             model_dir=tmp_path)
    second = releases.publish({"index": tmp_path / "index"}, action="rollback", model_dir=tmp_path)

    assert releases.read(tmp_path) == second
    assert second.previous == first.version and first.previous is None
    assert second.version != first.version
    assert second.action == "rollback" and second.rasa_model is None
    assert first.parts == {"intent": str(tmp_path / "intent")} and first.gate["intent"]["accuracy"] == 0.9
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed whole


def test_versions_sort_by_time_and_do_not_repeat():
    versions = {releases.new_version(1_800_000_000.0) for _ in range(50)}
    assert len(versions) > 45
    assert min(versions).startswith("20270115-")
    assert releases.new_version(1_800_000_000.0) < releases.new_version(1_800_000_060.0)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"promoted_at": 1.0})])
def test_a_broken_marker_is_an_error_naming_the_file(tmp_path, content):
    (tmp_path / releases.RELEASE_FILE).write_text(content)
    with pytest.raises(releases.ReleaseFileError, match="release.json"):
        releases.read(tmp_path)


def test_unknown_fields_from_a_newer_writer_are_ignored(tmp_path):
    (tmp_path / releases.RELEASE_FILE).write_text(json.dumps({"version": "v1", "promoted_at": 1.0, "future": True}))
    assert releases.read(tmp_path).version == "v1"
