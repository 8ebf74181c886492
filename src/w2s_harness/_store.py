"""On-disk stage cache: ``<output_dir>/stages/<stage id>/{result.json, artifact.npz}``.

Every write goes to a temporary sibling and is renamed into place, so an interrupted run never leaves a
half-written stage that a later run would trust.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ._results import StageRecord


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class StageStore:
    """Finished stages by content hash."""

    def __init__(self, root: Path):
        self.root = Path(root) / "stages"

    def _dir(self, stage_id: str) -> Path:
        return self.root / stage_id

    def has(self, stage_id: str) -> bool:
        return (self._dir(stage_id) / "result.json").is_file()

    def load(self, stage_id: str) -> tuple[StageRecord, dict]:
        """``(record, arrays)`` of a finished stage."""
        import numpy as np

        d = self._dir(stage_id)
        record = StageRecord.from_dict(json.loads((d / "result.json").read_text(encoding="utf-8")))
        arrays = {}
        if (d / "artifact.npz").is_file():
            with np.load(d / "artifact.npz") as npz:
                arrays = {k: npz[k] for k in npz.files}
        return record, arrays

    def save(self, record: StageRecord, arrays: dict) -> None:
        """Write a stage directory atomically (built in a temp dir, then renamed)."""
        import numpy as np

        stage_id = record.id
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{stage_id}."))
        try:
            if arrays:
                np.savez(tmp / "artifact.npz", **arrays)
            (tmp / "result.json").write_text(json.dumps(record.to_dict(), indent=2, default=str), encoding="utf-8")
            final = self._dir(stage_id)
            if final.exists():  # a concurrent worker finished the same stage: theirs is identical
                shutil.rmtree(tmp)
                return
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
