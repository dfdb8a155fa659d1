"""core.records: the one line-numbered JSONL/CSV reader; core.files: the one atomic folder writer."""
import json

import pytest

from core.files import replacing_folder
from core.records import RecordError, csv_columns, read_csv, read_jsonl, read_lines, read_records


def test_jsonl_rows_come_with_their_line_numbers_and_bad_lines_name_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{broken\n["list"]\n{"b": 2}\n', encoding="utf-8")
    rows = list(read_jsonl(path, errors="yield"))
    assert [line for line, _ in rows] == [1, 3, 4, 5]
    assert rows[0] == (1, {"a": 1}) and rows[3] == (5, {"b": 2})
    assert rows[1][1].location == f"{path}:3" and rows[1][1].problem.startswith("not valid JSON (")
    assert rows[2][1].problem == "not a JSON object"
    with pytest.raises(RecordError, match=r"rows\.jsonl:3: not valid JSON"):
        list(read_jsonl(path))
    with pytest.raises(RecordError, match=r"rows\.jsonl:1: missing b"):
        list(read_jsonl(path, required=("b",)))


def test_csv_rows_are_dicts_by_header_with_problems_at_their_lines(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('\ufeffQuestion , Answer\n"multi\nline",yes\n,\nx,y,z\nfine,ok,\n', encoding="utf-8")
    assert csv_columns(path) == ["question", "answer"]
    rows = list(read_csv(path, required=("question", ("answer", "reply")), errors="yield"))
    assert rows[0] == (3, {"question": "multi\nline", "answer": "yes"})  # the row's last line
    assert rows[1][0] == 5 and rows[1][1].problem == "3 fields where the header has 2"
    assert rows[2] == (6, {"question": "fine", "answer": "ok"})  # a trailing separator is no extra field
    with pytest.raises(RecordError, match=r"rows\.csv:1: the header needs column\(s\) text, one of label/intent"):
        list(read_csv(path, required=("text", ("label", "intent"))))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert [(line, row.problem) for line, row in read_csv(empty, errors="yield")] == [(1, "empty file")]


def test_tsv_unknown_types_and_windows_1252_lines(tmp_path):
    tsv = tmp_path / "rows.tsv"
    tsv.write_bytes("a\tb\ncaf\xe9\t1\n".encode("cp1252"))
    assert list(read_records(tsv)) == [(2, {"a": "café", "b": "1"})]
    assert list(read_lines(tsv)) == ["a\tb\n", "café\t1\n"]
    with pytest.raises(RecordError, match="unknown file type '.txt'"):
        read_records(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="errors must be"):
        list(read_jsonl(tsv, errors="ignore"))


def test_a_replaced_folder_is_whole_old_or_whole_new(tmp_path):
    folder = tmp_path / "models" / "index"
    with replacing_folder(folder) as staging:
        assert staging.parent == folder.parent and staging.name.startswith(".index-") and not folder.exists()
        (staging / "a.json").write_text(json.dumps(1))
    assert sorted(p.name for p in folder.iterdir()) == ["a.json"]
    with pytest.raises(RuntimeError):
        with replacing_folder(folder) as staging:
            (staging / "b.json").write_text("half")
            raise RuntimeError("crash while writing")
    assert sorted(p.name for p in folder.iterdir()) == ["a.json"]  # untouched
    with replacing_folder(folder) as staging:
        (staging / "c.json").write_text("2")
    assert sorted(p.name for p in folder.iterdir()) == ["c.json"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["index"]  # nothing left beside it
    assert folder.stat().st_mode & 0o077 == 0  # private: an index holds customers' questions
