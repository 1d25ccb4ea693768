from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from urgency.errors import InputError, OutputError
from urgency.files import (
    AtomicTableWriter,
    NotTextError,
    check_not_input,
    file_format,
    index_to_columns,
    iter_jsonl,
    read_chunks,
    read_table,
    write_table_atomic,
    write_text_atomic,
)

FRAME = pd.DataFrame({"id": ["007", "2"], "body": ["server down", ""], "plan": ["NA", "gold"]})


def _read(path: Path) -> pd.DataFrame:
    """What a writer wrote, read back with pandas itself (not the module under test)."""
    kind = file_format(path)
    if kind == "parquet":
        return pd.read_parquet(path)
    if kind == "jsonl":
        return pd.read_json(path, lines=True, dtype=str)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x.csv", "csv"),
        ("x.CSV.gz", "csv"),
        ("x.parquet", "parquet"),
        ("x.jsonl", "jsonl"),
        ("x.ndjson", "jsonl"),
        ("x.jsonl.gz", "jsonl"),
    ],
)
def test_file_format_from_any_suffix(name: str, expected: str) -> None:
    assert file_format(Path(name)) == expected


def test_unknown_file_type_is_an_input_error_unless_a_default_is_given() -> None:
    with pytest.raises(
        InputError, match=r"x.xlsx: unknown file type \(use .csv, .csv.gz, .parquet or .jsonl\)"
    ):
        file_format(Path("x.xlsx"))
    assert file_format(Path("export.txt"), default="csv") == "csv"
    assert file_format(Path("x.parquet"), default="csv") == "parquet"


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet", ".jsonl"])
def test_chunks_read_what_was_written(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"out{suffix}"
    frame = pd.concat([FRAME] * 3, ignore_index=True)
    write_table_atomic(frame, target)
    chunks = list(read_chunks(target, 4))
    assert [len(chunk) for chunk in chunks] == [4, 2]
    read = pd.concat(chunks, ignore_index=True)
    # CSV and JSON Lines text is kept as written: "007" and "NA" stay text, "" stays "".
    assert read["id"].tolist() == ["007", "2"] * 3
    assert read["plan"].tolist() == ["NA", "gold"] * 3
    assert read["body"].tolist() == ["server down", ""] * 3


def test_read_chunks_errors_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.csv: file not found"):
        next(read_chunks(tmp_path / "missing.csv", 10))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("body\nGröße\n".encode("latin-1"))
    not_text = r"latin\.csv: not utf-8 text \(byte \d+\); .*`encoding:`.*--source"
    with pytest.raises(NotTextError, match=not_text):
        list(read_chunks(latin, 10))
    assert next(read_chunks(latin, 10, "latin-1"))["body"].tolist() == ["Größe"]
    latin_lines = tmp_path / "latin.jsonl"
    latin_lines.write_bytes('{"body": "Größe"}\n'.encode("cp1252"))
    assert next(read_chunks(latin_lines, 10, "cp1252"))["body"].tolist() == ["Größe"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"body": "a"}\n[1, 2]\n')
    with pytest.raises(InputError, match="cannot be read as jsonl: line 2: expected a JSON object, got list"):
        list(read_chunks(broken, 10))


def test_read_table_keeps_text_and_reads_missing_csv_cells_as_missing(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    FRAME.to_csv(target, index=False)
    table = read_table(target)
    assert table["id"].tolist() == ["007", "2"]
    assert table["body"].isna().tolist() == [False, True]
    assert table["plan"].isna().tolist() == [True, False]
    # The format may be given, whatever the name says.
    renamed = tmp_path / "t.txt"
    target.rename(renamed)
    assert read_table(renamed, "csv")["id"].tolist() == ["007", "2"]


def test_read_table_errors_name_the_file_and_encoding(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.jsonl: file not found"):
        read_table(tmp_path / "missing.jsonl")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("body\nGröße\n".encode("latin-1"))
    with pytest.raises(NotTextError, match=r"latin\.csv: not utf-8 text \(byte \d+\)$"):
        read_table(latin)
    assert read_table(latin, encoding="latin-1")["body"].tolist() == ["Größe"]
    broken = tmp_path / "broken.csv"
    broken.write_text('a,b\n"unclosed,quote\n')
    with pytest.raises(InputError, match=r"broken\.csv: cannot be read as csv"):
        read_table(broken)


def test_json_lines_values_are_text_in_any_key_order(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    rows = [
        {"id": 570306133677760513, "flag": True, "tags": ["a", "é"], "body": "x"},
        {"body": "y", "id": "x3", "flag": None},
    ]
    with source.open("w", encoding="utf-8-sig") as out:  # with a byte-order mark
        out.write("".join(json.dumps(row) + "\n\n" for row in rows))
    (chunk,) = list(iter_jsonl(source, 10))
    assert chunk["id"].tolist() == ["570306133677760513", "x3"]
    assert chunk["flag"].tolist() == ["true", pd.NA]
    assert chunk.loc[0, "tags"] == '["a", "é"]'
    assert all(dtype == "string" for dtype in chunk.dtypes)


def test_index_to_columns() -> None:
    named = FRAME.set_index("id")
    assert index_to_columns(named).columns.tolist() == ["id", "body", "plan"]
    unnamed = FRAME.set_axis([5, 9])
    restored = index_to_columns(unnamed)
    assert restored.columns.tolist() == ["id", "body", "plan"] and restored.index.tolist() == [0, 1]


def test_parquet_saved_with_an_index_reads_it_as_a_column(tmp_path: Path) -> None:
    target = tmp_path / "indexed.parquet"
    FRAME.set_index("id").to_parquet(target)
    assert read_table(target)["id"].tolist() == ["007", "2"]
    assert next(read_chunks(target, 1))["id"].tolist() == ["007"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_writer_puts_chunks_in_the_first_chunks_column_order(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"out{suffix}"
    with AtomicTableWriter(target) as writer:
        writer.write(FRAME.iloc[:1])
        writer.write(FRAME.iloc[1:, ::-1])  # the same keys, in another order
    assert writer.rows == 2
    pd.testing.assert_frame_equal(_read(target), FRAME)
    assert not list(tmp_path.glob(".*partial"))


def test_new_columns_after_the_first_chunk_are_an_error(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    extra = r"column\(s\) \['extra'\] appear only after row 1"
    with pytest.raises(InputError, match=extra), AtomicTableWriter(target) as writer:
        writer.write(FRAME.iloc[:1])
        writer.write(FRAME.iloc[1:].assign(extra="x"))
    assert not target.exists() and not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_a_failure_leaves_the_older_output_and_no_partial_file(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"out{suffix}"
    write_table_atomic(FRAME, target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="stop"), AtomicTableWriter(target) as writer:
        writer.write(FRAME.iloc[:1])
        assert writer.partial.exists() and writer.partial.parent == tmp_path
        raise RuntimeError("stop")
    assert target.read_bytes() == before
    assert not list(tmp_path.glob(".*partial"))


def test_abort_and_commit_without_a_context_manager(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.parquet"  # the folder is created
    writer = AtomicTableWriter(target)
    writer.write(FRAME)
    writer.abort()
    assert not target.exists() and not writer.partial.exists()
    writer = AtomicTableWriter(target)
    writer.write(FRAME)
    assert not target.exists()  # nothing appears before the commit
    writer.commit()
    pd.testing.assert_frame_equal(pd.read_parquet(target), FRAME)


def test_gzip_output_is_compressed(tmp_path: Path) -> None:
    target = tmp_path / "out.csv.gz"
    write_table_atomic(FRAME, target)
    assert target.read_bytes()[:2] == b"\x1f\x8b"
    pd.testing.assert_frame_equal(_read(target), FRAME)


def test_no_rows_still_write_an_output(tmp_path: Path) -> None:
    for suffix in (".csv", ".parquet", ".jsonl"):
        target = tmp_path / f"empty{suffix}"
        with AtomicTableWriter(target):
            pass
        assert target.exists()


def test_kind_overrides_the_name(tmp_path: Path) -> None:
    target = tmp_path / "closed.txt"
    write_table_atomic(FRAME, target, kind="csv")
    assert pd.read_csv(target, dtype=str, keep_default_na=False).equals(FRAME)


def test_the_output_may_not_be_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "tickets.csv"
    source.write_text("body\nhello\n")
    (tmp_path / "link.csv").symlink_to(source)
    os.link(source, tmp_path / "hard.csv")
    monkeypatch.chdir(tmp_path)
    for same in (source, Path("tickets.csv"), tmp_path / "sub" / ".." / "tickets.csv", tmp_path / "link.csv"):
        with pytest.raises(InputError, match="the output is the input") as raised:
            check_not_input(source, same)
        assert raised.value.exit_code == 6
    with pytest.raises(InputError, match="the output is the input"):
        check_not_input(tmp_path / "hard.csv", source)
    check_not_input(source, tmp_path / "scored.csv")  # another file: fine, existing or not


def test_an_output_that_cannot_be_written_is_an_output_error(tmp_path: Path) -> None:
    """Tests run as root, where permissions stop nothing: the output's folder is a regular file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    for write in (
        lambda path: write_table_atomic(FRAME, path),
        lambda path: write_text_atomic("<html></html>", path),
    ):
        with pytest.raises(OutputError, match="cannot be written") as raised:
            write(blocker / "out.csv")
        assert raised.value.exit_code == 10 and str(blocker / "out.csv") in str(raised.value)
    assert blocker.read_text() == "not a folder\n"


# A full disk, played by a file size limit (writes past it fail with EFBIG; Python ignores SIGXFSZ).
FULL_DISK = textwrap.dedent(
    """
    import resource, secrets, sys
    from pathlib import Path
    import pandas as pd
    from urgency.errors import OutputError
    from urgency.files import write_table_atomic, write_text_atomic

    folder = Path(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
    big = pd.DataFrame({"body": [secrets.token_hex(50) for _ in range(1_000)]})  # no compressing it
    for name, write in (
        ("out.csv", lambda path: write_table_atomic(big, path)),
        ("out.parquet", lambda path: write_table_atomic(big, path)),
        ("out.jsonl", lambda path: write_table_atomic(big, path)),
        ("page.html", lambda path: write_text_atomic("x" * 100_000, path)),
    ):
        try:
            write(folder / name)
        except OutputError as error:
            print(name, error.exit_code, error)
    """
)


def test_a_full_disk_is_an_output_error_and_leaves_the_older_output(tmp_path: Path) -> None:
    names = ["out.csv", "out.parquet", "out.jsonl", "page.html"]
    for name in names:
        (tmp_path / name).write_text("older\n")
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [[name, "10"] for name in names], done.stdout
    assert all("cannot be written" in line for line in lines)
    for name in names:
        assert (tmp_path / name).read_text() == "older\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names)  # no partial file
