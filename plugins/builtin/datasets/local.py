"""``local``: a labelled text dataset from a CSV / TSV / JSON Lines / Parquet file, read with HF ``datasets``.

Example config::

    [dataset]
    name = "local"
    path = "qa.jsonl"
    text_columns = ["question", "answer"]     # joined with a newline ...
    template = "Q: {question}\\nA: {answer}"  # ... or formatted with this template
    label_column = "label"                   # strings or ints; class ids follow the sorted label values

A choice (preference) file instead: ``chosen_column = "chosen"`` + ``rejected_column = "rejected"`` (and
``prompt_column``, default ``"prompt"``), or ``candidates_column`` (a list per row) + ``answer_column`` (the index
of the correct candidate); see :class:`LocalChoiceDataset` and docs/choice.md.
"""

from __future__ import annotations

import os
import string
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from w2s_harness import (
    BaseDataset,
    Choice,
    ChoiceDataset,
    ConfigError,
    DataError,
    TextData,
    check_path,
    check_str,
    fingerprint_examples,
)

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
    :param difficulty_column: optional numeric column: each row's difficulty, for easy-to-hard splits.
    """

    name = "local"

    def __init__(
        self,
        path: str,
        text_columns: list[str] | str | None = None,
        label_column: str = "label",
        template: str | None = None,
        encoding: str | None = None,
        difficulty_column: str | None = None,
        n_train: int | None = None,
        n_test: int | None = None,
        test_seed: int = 0,
    ):
        super().__init__(n_train=n_train, n_test=n_test, test_seed=test_seed)
        self.path = check_path(path, "path", owner="dataset 'local'", what="a file path")
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
        check_str(template, "template", owner="dataset 'local'", non_empty=False, optional=True)
        check_str(label_column, "label_column", owner="dataset 'local'", what="a column name")
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
        check_str(difficulty_column, "difficulty_column", owner="dataset 'local'", optional=True, what="a column name")
        self.difficulty_column = difficulty_column

    def params(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "text_columns": self.text_columns,
            "label_column": self.label_column,
            "template": self.template,
            "encoding": self.encoding,
        }
        if self.difficulty_column is not None:
            out["difficulty_column"] = self.difficulty_column
        return out

    def _table(self) -> dict[str, list]:
        if getattr(self, "_cols", None) is None:
            self._cols = read_table(self.path, encoding=self.encoding)
        return self._cols

    def _row_difficulty(self, rows: np.ndarray) -> list | None:
        if self.difficulty_column is None:
            return None
        cols = self._table()
        if self.difficulty_column not in cols:
            raise DataError(f"dataset 'local' ({self.path}): no column {self.difficulty_column!r} "
                            f"(difficulty_column); available columns: {', '.join(cols)}")
        return [cols[self.difficulty_column][i] for i in rows]

    def _load(self) -> TextData:
        cols = self._table()
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


# ------------------------------------------------------------------------------------------ choice files


class LocalChoiceDataset(ChoiceDataset):
    """A choice (preference) file on disk: a prompt and candidates per row, one of them correct.

    Either ``chosen_column`` + ``rejected_column`` (two candidates, the chosen one correct: a preference pair) or
    ``candidates_column`` (a list per row) + ``answer_column`` (the 0-based index of the correct one). Rows with
    identical candidates are skipped.

    :param prompt_column: column of the shared prompt (``""``: no prompt, the candidates alone are scored).
    :param pair_template: how prompt and candidate become the scored text (default ``"{prompt}\\n{candidate}"``).
    :param difficulty_column: optional numeric column carried as each example's difficulty.
    """

    name = "local"

    def __init__(self, path: str, prompt_column: str = "prompt", chosen_column: str | None = None,
                 rejected_column: str | None = None, candidates_column: str | None = None,
                 answer_column: str | None = None, difficulty_column: str | None = None,
                 encoding: str | None = None, pair_template: str | None = None, shuffle_seed: int = 0,
                 n_train: int | None = None, n_test: int | None = None, test_seed: int = 0):
        super().__init__(pair_template=pair_template, shuffle_seed=shuffle_seed, n_train=n_train, n_test=n_test,
                         test_seed=test_seed)
        check_path(path, "path", owner="dataset 'local'", what="a file path")
        for key, value in (("prompt_column", prompt_column), ("chosen_column", chosen_column),
                           ("rejected_column", rejected_column), ("candidates_column", candidates_column),
                           ("answer_column", answer_column), ("difficulty_column", difficulty_column)):
            check_str(value, key, owner="dataset 'local'", optional=True, what="a column name")
        pairwise = chosen_column is not None or rejected_column is not None
        listed = candidates_column is not None or answer_column is not None
        if pairwise and listed:
            raise ConfigError("dataset 'local': give chosen_column + rejected_column or candidates_column + "
                              "answer_column, not both")
        if pairwise and (chosen_column is None or rejected_column is None):
            raise ConfigError("dataset 'local': a preference file needs both chosen_column and rejected_column")
        if listed and (candidates_column is None or answer_column is None):
            raise ConfigError("dataset 'local': a choice file needs both candidates_column and answer_column")
        self.path = str(path)
        self.prompt_column = prompt_column
        self.chosen_column, self.rejected_column = chosen_column, rejected_column
        self.candidates_column, self.answer_column = candidates_column, answer_column
        self.difficulty_column = difficulty_column
        self.encoding = encoding

    def choice_params(self) -> dict[str, Any]:
        return {"path": self.path, "prompt_column": self.prompt_column, "chosen_column": self.chosen_column,
                "rejected_column": self.rejected_column, "candidates_column": self.candidates_column,
                "answer_column": self.answer_column, "difficulty_column": self.difficulty_column,
                "encoding": self.encoding}

    def _all_choices(self) -> list[Choice | None]:
        cols = read_table(self.path, encoding=self.encoding)
        source = f"dataset 'local' ({self.path})"
        needed = [c for c in (self.prompt_column or None, self.chosen_column, self.rejected_column,
                              self.candidates_column, self.answer_column, self.difficulty_column) if c]
        for c in needed:
            if c not in cols:
                raise DataError(f"{source}: no column {c!r}; available columns: {', '.join(cols) or '(none)'}")
        n = len(next(iter(cols.values()), []))
        if n == 0:
            raise DataError(f"{source} has no rows")
        prompts = [_cell(v) for v in cols[self.prompt_column]] if self.prompt_column else [""] * n
        diff = cols.get(self.difficulty_column) if self.difficulty_column else None
        out: list[Choice | None] = []
        for i in range(n):
            if self.chosen_column is not None:
                a, b = cols[self.chosen_column][i], cols[self.rejected_column][i]
                if a is None or b is None:
                    out.append(None)
                    continue
                cands, correct = (_cell(a), _cell(b)), 0
            else:
                listed, answer = cols[self.candidates_column][i], cols[self.answer_column][i]
                if not isinstance(listed, (list, tuple)):
                    raise DataError(f"{source}: row {i}: {self.candidates_column!r} must be a list of candidates, "
                                    f"got {type(listed).__name__}")
                if isinstance(answer, bool) or not isinstance(answer, (int, np.integer, float)) or (
                        not float(answer).is_integer()):
                    raise DataError(f"{source}: row {i}: {self.answer_column!r} must be the 0-based index of the "
                                    f"correct candidate, got {answer!r}")
                cands, correct = tuple(_cell(c) for c in listed), int(answer)
                if not 0 <= correct < len(cands):
                    raise DataError(f"{source}: row {i}: {self.answer_column!r} = {correct} is not an index into "
                                    f"its {len(cands)} candidates")
            d = None if diff is None or diff[i] is None else float(diff[i])
            out.append(Choice(prompts[i], cands, correct, d))
        return out


def local_dataset(
    path: str,
    text_columns: list[str] | str | None = None,
    label_column: str = "label",
    template: str | None = None,
    encoding: str | None = None,
    prompt_column: str = "prompt",
    chosen_column: str | None = None,
    rejected_column: str | None = None,
    candidates_column: str | None = None,
    answer_column: str | None = None,
    difficulty_column: str | None = None,
    pair_template: str | None = None,
    shuffle_seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    test_seed: int = 0,
):
    """The ``local`` factory: a :class:`LocalChoiceDataset` when a choice column is named (``chosen_column`` /
    ``rejected_column`` or ``candidates_column`` / ``answer_column``), else a :class:`LocalDataset`."""
    given = {"chosen_column": chosen_column, "rejected_column": rejected_column,
             "candidates_column": candidates_column, "answer_column": answer_column}
    common = {"n_train": n_train, "n_test": n_test, "test_seed": test_seed}
    if any(v is not None for v in given.values()):
        if text_columns is not None or template is not None or label_column != "label":
            raise ConfigError("dataset 'local': text_columns, template and label_column are for labelled texts; a "
                              "choice file uses prompt_column and chosen/rejected_column or candidates/answer_column")
        return LocalChoiceDataset(path, prompt_column=prompt_column, difficulty_column=difficulty_column,
                                  encoding=encoding, pair_template=pair_template, shuffle_seed=shuffle_seed,
                                  **given, **common)
    extra = [k for k, v in (("prompt_column", prompt_column != "prompt"),
                            ("pair_template", pair_template), ("shuffle_seed", shuffle_seed != 0)) if v]
    if extra:
        raise ConfigError(f"dataset 'local': {', '.join(extra)} only apply to a choice file; name its columns with "
                          f"chosen_column + rejected_column or candidates_column + answer_column")
    return LocalDataset(path, text_columns=text_columns, label_column=label_column, template=template,
                        encoding=encoding, difficulty_column=difficulty_column, **common)
