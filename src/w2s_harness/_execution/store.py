"""On-disk stage cache: ``<output_dir>/stages/<stage id>/``.

A stage directory holds ``result.json`` (the :class:`StageRecord`), ``identity.json`` (what its id hashes, for
``run --dry-run``), ``artifact.npz`` (its arrays, if any) and ``manifest.json``: the sha256 of each of those files.
The directory is built under a temporary name and renamed into place, so a killed run (even ``kill -9``) never
leaves a half-written stage under a real id; the manifest lets a later run detect a stage file corrupted or
truncated afterwards (a disk error, a bad copy, a manual edit): such a stage is reported in one line, removed and
recomputed, never trusted.

Concurrent runs on one output directory coordinate through one lock file per stage
(``stages/.locks/<id>.lock``, :mod:`filelock`): whoever holds it computes the stage; the other run waits for it
(doing other ready work meanwhile) and then reads the finished stage instead of computing it again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .._contracts.errors import W2SError
from .._data.filehash import file_sha256  # uncached: a manifest check must read the bytes
from .._engine.stage import StageRecord

#: Stage ids are 16 lowercase hex digits (a truncated sha256); nothing else becomes a path.
STAGE_ID = re.compile(r"[0-9a-f]{16}")
#: Version of the stage directory layout.
LAYOUT = 2
_FILES = ("result.json", "identity.json", "artifact.npz")


class CorruptStage(W2SError):
    """A stored stage whose files do not match its manifest (or cannot be read)."""


def check_stage_id(stage_id: str) -> str:
    """``stage_id`` if it is a well-formed stage id, else a one-line error (ids become directory names)."""
    if not isinstance(stage_id, str) or not STAGE_ID.fullmatch(stage_id):
        raise W2SError(f"invalid stage id {stage_id!r}: stage ids are 16 lowercase hex digits")
    return stage_id


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same directory, fsync'd, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class StageStore:
    """Finished stages by content hash, checksummed, with one lock per stage for concurrent runs."""

    def __init__(self, root: Path):
        self.root = Path(root) / "stages"

    def _dir(self, stage_id: str) -> Path:
        return self.root / check_stage_id(stage_id)

    def has(self, stage_id: str) -> bool:
        """Whether a finished stage directory exists (its content is checked by :meth:`load`)."""
        return (self._dir(stage_id) / "manifest.json").is_file()

    def load(self, stage_id: str) -> tuple[StageRecord, dict]:
        """``(record, arrays)`` of a finished stage; :class:`CorruptStage` if a file fails its checksum."""
        import numpy as np

        d = self._dir(stage_id)
        try:
            manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
            for name, digest in manifest["files"].items():
                if name not in _FILES:
                    raise CorruptStage(f"unexpected file {name!r} in its manifest")
                if file_sha256(d / name) != digest:
                    raise CorruptStage(f"{name} does not match its checksum")
            record = StageRecord.from_dict(json.loads((d / "result.json").read_text(encoding="utf-8")))
            arrays = {}
            if "artifact.npz" in manifest["files"]:
                with np.load(d / "artifact.npz", allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in npz.files}
        except CorruptStage:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptStage(f"{type(exc).__name__}: {exc}") from None
        if record.id != stage_id:
            raise CorruptStage(f"result.json names stage {record.id!r}")
        return record, arrays

    def identity(self, stage_id: str) -> dict[str, Any] | None:
        """The stored ``identity.json`` document of a stage (``None`` if absent or unreadable)."""
        try:
            return json.loads((self._dir(stage_id) / "identity.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def stored_ids(self) -> list[str]:
        """Ids of the finished stages in the store."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if STAGE_ID.fullmatch(p.name) and (p / "manifest.json").is_file())

    def remove(self, stage_id: str) -> None:
        """Delete a stage directory (a corrupt one, before recomputing it)."""
        d = self._dir(stage_id)
        trash = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{stage_id}.trash."))
        try:
            os.replace(d, trash / "stage")  # atomic: never a half-deleted stage under its id
        except FileNotFoundError:
            pass
        shutil.rmtree(trash, ignore_errors=True)

    def save(self, record: StageRecord, arrays: dict, identity: dict[str, Any] | None = None) -> None:
        """Write a stage directory atomically (built in a temp dir, fsync'd, then renamed)."""
        import numpy as np

        stage_id = check_stage_id(record.id)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{stage_id}."))
        try:
            if arrays:
                np.savez(tmp / "artifact.npz", **arrays)
            (tmp / "result.json").write_text(json.dumps(record.to_dict(), indent=2, default=str), encoding="utf-8")
            payload = {"name": record.name, "seed": record.seed, "kind": record.kind, "identity": identity or {}}
            (tmp / "identity.json").write_text(json.dumps(payload, indent=1, sort_keys=True, default=str),
                                               encoding="utf-8")
            files = {name: file_sha256(tmp / name) for name in _FILES if (tmp / name).is_file()}
            (tmp / "manifest.json").write_text(json.dumps({"layout": LAYOUT, "files": files}, indent=1),
                                               encoding="utf-8")
            for name in (*files, "manifest.json"):
                with open(tmp / name, "rb") as fh:
                    os.fsync(fh.fileno())
            final = self._dir(stage_id)
            if final.exists():
                if (final / "manifest.json").is_file():  # another run finished it first: theirs is identical
                    shutil.rmtree(tmp)
                    return
                self.remove(stage_id)  # a leftover without a manifest (an older layout): replace it
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def lock(self, stage_id: str):
        """The :class:`filelock.FileLock` of a stage (acquire with ``timeout=0`` to try without waiting)."""
        from filelock import FileLock

        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(locks / f"{check_stage_id(stage_id)}.lock"))


__all__ = ["CorruptStage", "StageStore", "atomic_write_text", "check_stage_id"]
