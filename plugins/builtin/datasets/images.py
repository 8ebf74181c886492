"""Image datasets: ``image-folder`` (torchvision's ImageFolder layout) and ``hf-images`` (an HF dataset with an
image column).

An image dataset's texts are **image file paths**: the vision models (``torchvision:``, ``timm:``) open them, and
a text model given them would read the path, not the picture. Its content fingerprint is the sha256 of each
image's bytes (with the labels and class names), so moving the folder keeps the cached features, and editing an
image invalidates them. Only the rows a run uses are hashed (and, for ``hf-images``, written out).

``image-folder``::

    [dataset]
    name = "image-folder"
    path = "imagenet/val"        # <path>/<class>/<image>, classes in sorted folder order
    test_path = "..."            # optional: a designated test folder (same class folders)

``hf-images``: ``hub_id`` (the ``datasets`` cache when offline), ``path`` (a local copy of a hub repository) or
``data_files`` (parquet files with an ``Image`` column); ``split`` / ``test_split``, ``image_column`` (default
``image``) and ``label_column`` (default ``label``; a ``ClassLabel`` gives the class names). Images stored inside
the dataset are written once to a content-addressed folder, ``image_dir`` (default ``<user cache>/images``,
where the user cache is ``$W2S_HARNESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/w2s-harness``, else
``~/.cache/w2s-harness``); images the dataset references by a local path are read in place.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from w2s_harness import (
    BaseDataset,
    ConfigError,
    DataError,
    TextData,
    check_path,
    check_str,
    fingerprint_examples,
)
from w2s_harness.utils import file_sha256s, user_cache_dir

from .hfsource import load_source, normalise_data_files
from .local import labels_to_ids

#: The file extensions torchvision's ImageFolder accepts (``torchvision.datasets.folder.IMG_EXTENSIONS``).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def scan_folder(root: Path, owner: str) -> tuple[list[str], list[tuple[str, int]]]:
    """``(classes, [(path, class id)])`` of an ImageFolder tree, in torchvision's order: class folders sorted,
    each walked with ``os.walk`` (links followed) in sorted order, files with an image extension sorted."""
    if not root.is_dir():
        raise DataError(f"dataset {owner!r}: {str(root)!r} is not a directory (relative paths are resolved from "
                        f"{os.getcwd()!r})")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise DataError(f"dataset {owner!r}: no class folders in {str(root)!r}; expected <path>/<class>/<image>")
    samples = []
    for idx, cls in enumerate(classes):
        for dirpath, _, fnames in sorted(os.walk(root / cls, followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith(IMG_EXTENSIONS):
                    samples.append((os.path.abspath(os.path.join(dirpath, fname)), idx))
    return classes, samples


class ImageFolder(BaseDataset):
    """Images in class folders, ``<path>/<class>/**/<image>`` (torchvision's ImageFolder layout).

    :param path: the root folder; class ids follow the sorted class folder names.
    :param test_path: optional folder of designated test images with the same class folders (``n_test = None``
        then uses all of them); without it the test split is drawn from ``path``.
    """

    name = "image-folder"

    def __init__(self, path: str, test_path: str | None = None, n_train: int | None = None,
                 n_test: int | None = None, test_seed: int = 0):
        super().__init__(n_train=n_train, n_test=n_test, test_seed=test_seed)
        owner = f"dataset {self.name!r}"
        self.path = check_path(path, "path", owner=owner, what="a folder path")
        self.test_path = check_path(test_path, "test_path", owner=owner, optional=True, what="a folder path")
        self._scan: tuple[list[str], list[tuple[str, int]], int] | None = None

    def params(self) -> dict[str, Any]:
        return {"path": self.path, "test_path": self.test_path}

    def _samples(self) -> tuple[list[str], list[tuple[str, int]], int]:
        """``(classes, samples, n_train_rows)``: the training folder's images, then the test folder's."""
        if self._scan is None:
            classes, samples = scan_folder(Path(os.path.expanduser(self.path)), self.name)
            n_first = len(samples)
            if self.test_path is not None:
                test_classes, test = scan_folder(Path(os.path.expanduser(self.test_path)), self.name)
                extra = sorted(set(test_classes) - set(classes))
                if extra:
                    raise DataError(f"dataset {self.name!r}: test_path has class folders {extra[:3]} that path "
                                    f"{self.path!r} lacks; both need the same classes")
                index = {c: i for i, c in enumerate(classes)}
                samples = samples + [(p, index[test_classes[c]]) for p, c in test]
            if not samples:
                raise DataError(f"dataset {self.name!r}: no images ({', '.join(IMG_EXTENSIONS)}) under "
                                f"{self.path!r}")
            self._scan = (classes, samples, n_first)
        return self._scan

    def _num_rows(self) -> int:
        return len(self._samples()[1])

    def _test_candidates(self) -> np.ndarray | None:
        if self.test_path is None:
            return None
        _, samples, n_first = self._samples()
        return np.arange(n_first, len(samples))

    def _row_labels(self, rows: np.ndarray) -> np.ndarray:
        samples = self._samples()[1]
        return np.array([samples[i][1] for i in rows], dtype=np.int64)

    def _num_classes(self) -> int:
        return len(self._samples()[0])

    def _load_rows(self, rows: np.ndarray) -> TextData:
        classes, samples, _ = self._samples()
        texts = [samples[i][0] for i in rows]
        labels = np.array([samples[i][1] for i in rows], dtype=np.int64)
        try:
            digests = file_sha256s(texts)
        except OSError as exc:
            raise DataError(f"dataset {self.name!r}: cannot read {exc.filename!r}: {exc.strerror}") from None
        return TextData(texts, labels, list(classes), fingerprint_examples(digests, labels, classes))


def _write_image(image_dir: Path, data: bytes, suffix: str) -> str:
    """Path of ``data`` in the content-addressed ``image_dir`` (written once, atomically)."""
    digest = hashlib.sha256(data).hexdigest()
    dest = image_dir / digest[:2] / f"{digest}{suffix}"
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return str(dest)


class HFImages(BaseDataset):
    """An HF ``datasets`` dataset with an image column and a label column.

    :param hub_id: a hub dataset id (read through the ``datasets`` cache when the hub is unreachable).
    :param path: a local copy of a hub repository (its data files, or its parquet branch layout).
    :param data_files: local parquet / JSON Lines files holding an ``Image`` column (a path, a list, or
        ``{split = path}``).
    :param config: the dataset's configuration name; ``revision``: a hub revision.
    :param split: the split the rows come from; ``test_split``: an optional split of designated test rows.
    :param image_column: the column of images (an ``Image`` feature, or strings that are image file paths).
    :param label_column: the column of labels: a ``ClassLabel`` (its names are the classes), or strings/integers
        (class ids follow the sorted values).
    :param image_dir: where images stored inside the dataset are written (content-addressed); default
        ``<user cache>/images``.
    :param cache_dir: the ``datasets`` cache to read through (default: a temporary one for local files).
    """

    name = "hf-images"

    def __init__(self, hub_id: str | None = None, path: str | None = None, data_files: Any = None,
                 config: str | None = None, revision: str | None = None, split: str = "train",
                 test_split: str | None = None, image_column: str = "image", label_column: str = "label",
                 image_dir: str | None = None, cache_dir: str | None = None, n_train: int | None = None,
                 n_test: int | None = None, test_seed: int = 0):
        super().__init__(n_train=n_train, n_test=n_test, test_seed=test_seed)
        sources = [k for k, v in (("hub_id", hub_id), ("path", path), ("data_files", data_files)) if v is not None]
        if len(sources) != 1:
            raise ConfigError(f"dataset {self.name!r}: give exactly one of hub_id, path or data_files"
                              + (f" (got {', '.join(sources)})" if sources else ""))
        for key, value in (("split", split), ("image_column", image_column), ("label_column", label_column)):
            check_str(value, key, owner=f"dataset {self.name!r}")
        if test_split is not None and (not isinstance(test_split, str) or test_split == split):
            raise ConfigError(f"dataset {self.name!r}: test_split must be a split name other than {split!r}, "
                              f"got {test_split!r}")
        self.hub_id, self.path, self.config, self.revision = hub_id, path, config, revision
        self.split, self.test_split = split, test_split
        self.splits_used = [split] + ([test_split] if test_split else [])
        self.data_files = normalise_data_files(data_files, self.name, self.splits_used, split)
        self.image_column, self.label_column = image_column, label_column
        self.image_dir = image_dir
        self.cache_dir = cache_dir
        self._tables: list[Any] | None = None
        self._labels: tuple[np.ndarray, list[str]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # worker processes get the loaded rows (file paths); the source tables (image bytes) stay here
        return {**self.__dict__, "_tables": None}

    def params(self) -> dict[str, Any]:
        return {"hub_id": self.hub_id, "path": self.path, "data_files": self.data_files, "config": self.config,
                "revision": self.revision, "split": self.split, "test_split": self.test_split,
                "image_column": self.image_column, "label_column": self.label_column}

    def _splits_loaded(self) -> list[Any]:
        """The ``datasets.Dataset`` of each split used, the image column undecoded (``{"bytes", "path"}``)."""
        if self._tables is None:
            import datasets

            hint = "or pass data_files = <local parquet files> / path = <a local copy>"
            loaded = load_source(self.name, data_files=self.data_files, path=self.path, hub_id=self.hub_id,
                                 config=self.config, revision=self.revision, splits=self.splits_used,
                                 cache_dir=self.cache_dir, hint=hint)
            tables = []
            for split in self.splits_used:
                if split not in loaded:
                    raise DataError(f"dataset {self.name!r}: no split {split!r} (found {', '.join(loaded)})")
                ds = loaded[split]
                for col in (self.image_column, self.label_column):
                    if col not in ds.column_names:
                        raise DataError(f"dataset {self.name!r}: no column {col!r} in split {split!r}; columns: "
                                        f"{', '.join(ds.column_names)}")
                feature = ds.features[self.image_column]
                if isinstance(feature, datasets.Image):
                    ds = ds.cast_column(self.image_column, datasets.Image(decode=False))
                elif not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
                    raise DataError(f"dataset {self.name!r}: column {self.image_column!r} is "
                                    f"{type(feature).__name__}, not an Image (or image file paths)")
                tables.append(ds)
            self._tables = tables
        return self._tables

    def _num_rows(self) -> int:
        return sum(len(t) for t in self._splits_loaded())

    def _test_candidates(self) -> np.ndarray | None:
        if self.test_split is None:
            return None
        first = len(self._splits_loaded()[0])
        return np.arange(first, self._num_rows())

    def _all_labels(self) -> tuple[np.ndarray, list[str]]:
        if self._labels is None:
            import datasets

            tables = self._splits_loaded()
            feature = tables[0].features[self.label_column]
            raw = [v for t in tables for v in t[self.label_column]]
            if isinstance(feature, datasets.ClassLabel):
                ids = np.asarray(raw, dtype=np.int64)
                if (ids < 0).any():
                    raise DataError(f"dataset {self.name!r}: {int((ids < 0).sum())} rows have no label (-1)")
                self._labels = (ids, list(feature.names))
            else:
                self._labels = labels_to_ids(raw, self.label_column, f"dataset {self.name!r}")
        return self._labels

    def _row_labels(self, rows: np.ndarray) -> np.ndarray:
        return self._all_labels()[0][rows]

    def _num_classes(self) -> int:
        return len(self._all_labels()[1])

    def _load_rows(self, rows: np.ndarray) -> TextData:
        tables = self._splits_loaded()
        ids, names = self._all_labels()
        offsets = np.cumsum([0] + [len(t) for t in tables])
        image_dir = Path(os.path.expanduser(self.image_dir)) if self.image_dir else user_cache_dir() / "images"
        texts, digests = [], []
        for k, table in enumerate(tables):
            local = rows[(rows >= offsets[k]) & (rows < offsets[k + 1])] - offsets[k]
            if len(local) == 0:
                continue
            for i, cell in zip(local, table.select(local.tolist())[self.image_column]):
                text, digest = self._image_file(cell, int(i) + int(offsets[k]), image_dir)
                texts.append(text)
                digests.append(digest)
        labels = ids[rows]
        return TextData(texts, labels, list(names), fingerprint_examples(digests, labels, names))

    def _image_file(self, cell: Any, row: int, image_dir: Path) -> tuple[str, str]:
        """``(image file path, sha256 of its bytes)`` of one image cell."""
        if isinstance(cell, dict):
            data, path = cell.get("bytes"), cell.get("path")
        else:
            data, path = None, cell
        if data is None:
            if not path or not os.path.isfile(path):
                raise DataError(f"dataset {self.name!r}: row {row} has no image bytes and its path {path!r} is not a "
                                f"file on this machine")
            return os.path.abspath(path), file_sha256s([path])[0]
        suffix = Path(path).suffix.lower() if path and Path(path).suffix.lower() in IMG_EXTENSIONS else ""
        out = _write_image(image_dir, data, suffix)
        return out, Path(out).name.split(".")[0]
