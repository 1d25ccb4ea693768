"""Ticket files: which formats there are, how they are read, and how outputs are written.

Formats, told apart by the file name (`file_format`):

- CSV: `.csv`, or gzip-compressed `.csv.gz` (read, and written, compressed);
- Parquet: `.parquet`;
- JSON Lines: `.jsonl` or `.ndjson`, one JSON object per line (a byte-order mark is allowed).

CSV and JSON Lines values are read as text, so ids and codes never turn into floats; Parquet
columns keep their stored types. `read_chunks` streams a file in chunks of bounded size (scoring
any number of tickets); `read_table` reads a whole file (training data). A file that cannot be
read raises InputError naming it (NotTextError, a kind of InputError, when its bytes are not text
in the expected encoding); callers that report bad training data re-raise it as their own type.

Writing is atomic: `AtomicTableWriter` (chunk by chunk) and `write_table_atomic` (a whole frame)
write into a hidden file beside the output, `.<name>.partial`, that replaces the output only once
every row is written; `write_text_atomic` does the same for a text file (a report page). The
output appears only when complete; a failure leaves no partial file, and an older output at that
path stays as it was. A file system's refusal (no space, file too large, read-only, no
permission, a folder that cannot be made) is an OutputError naming the output. `check_not_input`
refuses an output that is the input itself (it would be destroyed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from urgency.errors import InputError, OutputError

# Rows per chunk when a whole JSON Lines file is read: bounds the records held as dicts at once.
_JSONL_TABLE_CHUNK = 100_000


class NotTextError(InputError):
    """The file's bytes are not text in the expected encoding."""


def file_format(path: Path, default: str | None = None) -> str:
    """The format a file name says ("csv", "parquet" or "jsonl"), from any of its suffixes.

    A name with none of the known suffixes is an InputError, or `default` when one is given.
    """
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes:
        return "parquet"
    if ".jsonl" in suffixes or ".ndjson" in suffixes:
        return "jsonl"
    if ".csv" in suffixes:
        return "csv"
    if default is not None:
        return default
    raise InputError(f"{path}: unknown file type (use .csv, .csv.gz, .parquet or .jsonl)")


# ---------------------------------------------------------------------------------------------
# Reading


# What to do about a file that is not in the expected encoding, where a command reads it.
ENCODING_HINT = (
    "; describe the file as a source in params data.sources with its `encoding:` (an Excel CSV "
    "is often cp1252) and pass --source NAME"
)


def read_chunks(path: Path, chunk_size: int, encoding: str = "utf-8") -> Iterator[pd.DataFrame]:
    """Yield the file as DataFrames of at most `chunk_size` rows; text is kept as written
    (an empty CSV cell is the empty string, not a missing value). `encoding`: of a CSV or JSON
    Lines file (a source's `encoding:`)."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    kind = file_format(path)
    with _read_errors(path, kind, encoding, ENCODING_HINT):
        if kind == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
                yield index_to_columns(batch.to_pandas())
        elif kind == "jsonl":
            yield from iter_jsonl(path, chunk_size, encoding)
        else:
            yield from pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                chunksize=chunk_size,
                encoding=encoding,
                encoding_errors="strict",
            )


def read_table(path: Path, kind: str | None = None, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a whole CSV, Parquet or JSON Lines file with text columns kept as text.

    `kind` overrides the format the name says. Empty and "NA"-like CSV cells are missing values.
    """
    if not path.exists():
        raise InputError(f"{path}: file not found")
    kind = kind or file_format(path)
    with _read_errors(path, kind, encoding):
        if kind == "parquet":
            return index_to_columns(pd.read_parquet(path))
        if kind == "jsonl":
            chunks = list(iter_jsonl(path, _JSONL_TABLE_CHUNK, encoding))
            return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
        return pd.read_csv(path, dtype=str, keep_default_na=True, encoding=encoding, encoding_errors="strict")


@contextmanager
def _read_errors(path: Path, kind: str, encoding: str, hint: str = "") -> Iterator[None]:
    """Turn a reader's failure into an InputError that names the file and what is wrong."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise NotTextError(f"{path}: not {encoding} text (byte {error.start}){hint}") from None
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputError(f"{path}: cannot be read as {kind}: {error}") from None


def iter_jsonl(path: Path, chunk_size: int, encoding: str = "utf-8") -> Iterator[pd.DataFrame]:
    """JSON Lines in chunks, every value kept as written (as text), so ids and codes never turn
    into floats and a column's type cannot change from one chunk to the next."""
    # utf-8-sig also reads files that start with a byte-order mark.
    encoding = "utf-8-sig" if encoding.lower().replace("_", "-") == "utf-8" else encoding
    with path.open(encoding=encoding) as lines:
        records: list[dict[str, object]] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"line {number}: not JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"line {number}: expected a JSON object, got {type(record).__name__}")
            records.append({key: _json_text(value) for key, value in record.items()})
            if len(records) == chunk_size:
                yield pd.DataFrame.from_records(records).astype("string")
                records = []
        if records:
            yield pd.DataFrame.from_records(records).astype("string")


def _json_text(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def index_to_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame saved with its index: a named index (often the ticket id) becomes a column
    again, an unnamed one is dropped; rows are numbered from 0."""
    frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith("__index_level_")])
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index(drop=all(name is None for name in frame.index.names))
    return frame.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Writing


def check_not_input(input_path: Path, output_path: Path) -> None:
    """Refuse to write over the input: the same file, however either is written (relative,
    through a symbolic link, a hard link)."""
    same = input_path.resolve() == output_path.resolve()
    if not same and input_path.exists() and output_path.exists():
        same = os.path.samefile(input_path, output_path)
    if same:
        raise InputError(f"{output_path}: the output is the input {input_path}; write to another file")


@contextmanager
def _write_errors(path: Path) -> Iterator[None]:
    """Turn the file system's refusal to write `path` into an OutputError naming it."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        where = f" ({error.filename})" if error.filename and str(error.filename) != str(path) else ""
        raise OutputError(f"{path}: cannot be written: {reason}{where}") from None


class AtomicTableWriter:
    """Writes a table chunk by chunk to `path`, which appears only when `commit` is called.

    Chunks go to `.<name>.partial` beside `path` (the same folder, so the final rename is atomic);
    `commit` renames it onto `path`, `abort` deletes it. As a context manager it commits when the
    block ends normally and aborts on any exception. `kind` overrides the format the name says.
    """

    def __init__(self, path: Path, kind: str | None = None) -> None:
        self.kind = kind or file_format(path)
        with _write_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self.rows = 0
        # The compression follows the final name (pandas would infer none from ".partial").
        self.compression = "gzip" if path.suffix.lower() == ".gz" else None
        self._parquet: Any = None  # pyarrow.parquet.ParquetWriter, opened by the first chunk
        self._first = True
        self._columns: list[str] | None = None

    def __enter__(self) -> AtomicTableWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def write(self, chunk: pd.DataFrame) -> None:
        with _write_errors(self.path):
            self._write(chunk)

    def _write(self, chunk: pd.DataFrame) -> None:
        # Every chunk is written in the first chunk's columns (JSON Lines records may list their
        # keys in any order); a key the first chunk did not have cannot be placed.
        if self._columns is None:
            self._columns = list(chunk.columns)
        elif list(chunk.columns) != self._columns:
            extra = [c for c in chunk.columns if c not in self._columns]
            if extra:
                raise InputError(
                    f"column(s) {extra} appear only after row {self.rows}; put every key in the first rows"
                )
            chunk = chunk.reindex(columns=self._columns)
        self.rows += len(chunk)
        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._parquet is None:
                table = pa.Table.from_pandas(chunk, preserve_index=False)
                self._parquet = pq.ParquetWriter(self.partial, table.schema)
            else:
                table = pa.Table.from_pandas(chunk, schema=self._parquet.schema, preserve_index=False)
            self._parquet.write_table(table)
        elif self.kind == "jsonl":
            with self.partial.open("a" if not self._first else "w", encoding="utf-8") as out:
                out.write(chunk.to_json(orient="records", lines=True, date_format="iso"))
        else:
            chunk.to_csv(
                self.partial,
                mode="w" if self._first else "a",
                header=self._first,
                index=False,
                compression=self.compression,
            )
        self._first = False

    def commit(self) -> None:
        """Put the written table at `path`; if that fails, the partial file is removed."""
        try:
            with _write_errors(self.path):
                if self._parquet is not None:
                    self._parquet.close()
                if self._first:  # no chunk at all: still write an (empty) output
                    self._write(pd.DataFrame())
                    if self._parquet is not None:
                        self._parquet.close()
                os.replace(self.partial, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop what was written; an older file at `path` stays as it was."""
        try:
            if self._parquet is not None:
                self._parquet.close()
        except OSError:
            pass  # closing flushes: a full disk fails again; the partial file goes all the same
        finally:
            _remove(self.partial)


def write_table_atomic(frame: pd.DataFrame, path: Path, kind: str | None = None) -> None:
    """Write a whole frame to `path` (format from its name, or `kind`), complete or not at all."""
    with AtomicTableWriter(path, kind) as writer:
        writer.write(frame)


def write_text_atomic(text: str, path: Path) -> None:
    """Write a text file (UTF-8) to `path`, complete or not at all (through `.<name>.partial`)."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with _write_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(text, encoding="utf-8")
            os.replace(partial, path)
    except BaseException:
        _remove(partial)
        raise


def _remove(partial: Path) -> None:
    """Delete a partial file if there is one; a path that cannot even hold one is left alone."""
    with suppress(NotADirectoryError, IsADirectoryError):
        partial.unlink(missing_ok=True)
