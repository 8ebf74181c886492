"""``local``: a labelled text dataset from a CSV / TSV / JSON Lines / Parquet file, read with HF ``datasets``.

Example config::

    [dataset]
    name = "local"
    path = "qa.jsonl"
    text_columns = ["question", "answer"]     # joined with a newline ...
    template = "Q: {question}\\nA: {answer}"  # ... or formatted with this template
    label_column = "label"                   # strings or ints; class ids follow the sorted label values
"""

from __future__ import annotations

import os
import string
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from w2s_harness import BaseDataset, ConfigError, DataError, TextData, fingerprint_examples

#: file suffix -> (HF ``datasets`` packaged builder, extra builder kwargs)
FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".ndjson": ("json", {}),
    ".parquet": ("parquet", {}),
    ".pq": ("parquet", {}),
}


def read_table(path: str | os.PathLike, *, encoding: str | None = None) -> dict[str, list]:
    """Read a whole CSV/TSV/JSONL/Parquet file into ``{column: list}`` with HF ``datasets``.

    Works offline: only the packaged ``csv``/``json``/``parquet`` builders are used, and their Arrow cache goes
    to a temporary directory removed afterwards (nothing is written under ``~/.cache``).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {str(p)!r} (relative paths are resolved from {os.getcwd()!r})")
    suffix = p.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(
            f"cannot read {str(p)!r}: unsupported file type {suffix or '(none)'!r}; "
            f"use one of {', '.join(sorted(FORMATS))}"
        )
    builder, kwargs = FORMATS[suffix]
    kwargs = dict(kwargs)
    if encoding is not None and builder == "csv":
        kwargs["encoding"] = encoding

    import datasets  # heavy: import lazily

    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity_error()
    try:
        with tempfile.TemporaryDirectory(prefix="w2s-hfds-") as cache:
            try:
                ds = datasets.load_dataset(
                    builder, data_files=str(p), split="train", cache_dir=cache, keep_in_memory=True, **kwargs
                )
            except Exception as exc:  # noqa: BLE001 - any parse error (pyarrow, pandas, json): one line, no traceback
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise DataError(f"cannot read {str(p)!r} as {builder}: {first}") from None
            table = ds.data
            return {c: table.column(c).to_pylist() for c in ds.column_names}
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()


def labels_to_ids(values: list, column: str, source: str) -> tuple[np.ndarray, list[str]]:
    """Map raw label values (strings or integers) to class ids by sorted value; returns ``(ids, class_names)``."""
    missing = sum(v is None for v in values)
    if missing:
        raise DataError(f"{source}: label column {column!r} has {missing} empty value(s); drop those rows")
    if all(isinstance(v, str) for v in values):
        keys = values
    elif (
        all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
        or all(isinstance(v, bool) for v in values)
        or all(isinstance(v, (int, float)) and float(v).is_integer() for v in values)
    ):
        keys = [int(v) for v in values]
    else:
        kinds = sorted({type(v).__name__ for v in values})
        raise DataError(
            f"{source}: label column {column!r} must hold strings or integers, found {', '.join(kinds)}"
        )
    classes = sorted(set(keys))
    index = {c: i for i, c in enumerate(classes)}
    ids = np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
    return ids, [str(c) for c in classes]


def template_fields(template: str) -> list[str]:
    """Column names a ``str.format`` template refers to (``"{question}\\n{answer}"`` -> question, answer)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"bad template {template!r}: {exc}") from None
    fields = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ConfigError(
                f"bad template {template!r}: use named fields like {{question}}, not {{}} or {{0}}"
            )
        root = name.split(".")[0].split("[")[0]
        if root not in fields:
            fields.append(root)
    return fields


class LocalDataset(BaseDataset):
    """A labelled text file on disk.

    :param path: CSV/TSV/JSON Lines/Parquet file.
    :param text_columns: columns joined with a newline into the model input (default ``["text"]``).
    :param label_column: column of string or integer labels; class ids follow the sorted label values.
    :param template: optional ``str.format`` template over the columns (``"{question}\\n{answer}"``);
        replaces the newline join of ``text_columns``.
    :param encoding: text encoding of CSV/TSV files (default utf-8).
    """

    name = "local"

    def __init__(
        self,
        path: str,
        text_columns: list[str] | str | None = None,
        label_column: str = "label",
        template: str | None = None,
        encoding: str | None = None,
        n_train: int | None = None,
        n_test: int | None = None,
        test_seed: int = 0,
    ):
        super().__init__(n_train=n_train, n_test=n_test, test_seed=test_seed)
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ConfigError(f"dataset 'local': path must be a file path, got {path!r}")
        self.path = str(path)
        if isinstance(text_columns, str):
            text_columns = [text_columns]
        if text_columns is not None and (
            not isinstance(text_columns, (list, tuple))
            or not text_columns
            or not all(isinstance(c, str) for c in text_columns)
        ):
            raise ConfigError(
                f"dataset 'local': text_columns must be a list of column names, got {text_columns!r}"
            )
        if template is not None and not isinstance(template, str):
            raise ConfigError(f"dataset 'local': template must be a string, got {template!r}")
        if not isinstance(label_column, str):
            raise ConfigError(f"dataset 'local': label_column must be a column name, got {label_column!r}")
        self.template = template
        self.text_columns = (
            list(text_columns)
            if text_columns is not None
            else (template_fields(template) if template is not None else ["text"])
        )
        if template is not None:
            template_fields(template)  # validate early
        self.label_column = label_column
        self.encoding = encoding

    def params(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "text_columns": self.text_columns,
            "label_column": self.label_column,
            "template": self.template,
            "encoding": self.encoding,
        }

    def _load(self) -> TextData:
        cols = read_table(self.path, encoding=self.encoding)
        source = f"dataset 'local' ({self.path})"
        needed = [self.label_column] + (
            template_fields(self.template) if self.template is not None else self.text_columns
        )
        for c in needed:
            if c not in cols:
                raise DataError(
                    f"{source}: no column {c!r}; available columns: {', '.join(cols) or '(none)'}"
                )
        n = len(cols[self.label_column])
        if n == 0:
            raise DataError(f"{source} has no rows")
        labels, class_names = labels_to_ids(cols[self.label_column], self.label_column, source)
        texts = format_texts(cols, self.text_columns, self.template, n)
        return TextData(
            texts=texts,
            labels=labels,
            class_names=class_names,
            fingerprint=fingerprint_examples(texts, labels, class_names),
        )


def _cell(v: Any) -> str:
    return "" if v is None else v if isinstance(v, str) else str(v)


def format_texts(cols: dict[str, list], text_columns: list[str], template: str | None, n: int) -> list[str]:
    """Model inputs: ``template.format(**row)`` if a template is given, else the text columns joined by newlines."""
    if template is None:
        if len(text_columns) == 1:
            return [_cell(v) for v in cols[text_columns[0]]]
        return ["\n".join(_cell(cols[c][i]) for c in text_columns) for i in range(n)]
    fields = template_fields(template)
    out = []
    for i in range(n):
        row = {f: _cell(cols[f][i]) for f in fields}
        try:
            out.append(template.format(**row))
        except (IndexError, KeyError, AttributeError, ValueError) as exc:
            raise ConfigError(f"template {template!r} failed on row {i}: {exc}") from None
    return out
