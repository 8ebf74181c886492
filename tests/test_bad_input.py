"""The remaining bad inputs: an unwritable output directory, a full disk, an out-of-memory stage, an invalid stage
id and a pickle in a stage file. Each is one line on stderr with exit status 2, naming the path or the stage and
the fix, and keeps what finished."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from test_pipeline import write_config

from w2s_harness import W2SError, hookimpl
from w2s_harness._cli.cli import main
from w2s_harness._execution.store import CorruptStage, StageStore, check_stage_id


def errors(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_an_output_directory_that_cannot_be_created_is_one_line_before_anything_runs(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cfg = write_config(tmp_path, seeds="[0]")
    assert main(["run", "--config", str(cfg), "-o", str(blocker / "out")]) == 2
    (line,) = errors(capsys.readouterr().err)
    assert f"cannot write to the output directory {str(blocker / 'out')!r}" in line
    assert "choose a writable one with --output-dir" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_a_read_only_output_directory_is_one_line(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        cfg = write_config(tmp_path, seeds="[0]")
        assert main(["run", "--config", str(cfg), "-o", str(out)]) == 2
        (line,) = errors(capsys.readouterr().err)
        assert "cannot write to the output directory" in line and "Permission denied" in line
    finally:
        out.chmod(0o700)


def test_a_full_disk_is_one_line_naming_the_stage_and_finished_stages_are_kept(tmp_path, capsys, monkeypatch):
    """The disk "fills up" when the fourth stage is stored: np.savez raises ENOSPC as the real call would."""
    real_savez = np.savez
    calls = []

    def savez(*args, **kwargs):
        calls.append("/stages/" in str(args[0]))  # stage artifacts, not the feature cache's chunks
        if sum(calls) == 4 and calls[-1]:
            raise OSError(errno.ENOSPC, "No space left on device", str(args[0]))
        return real_savez(*args, **kwargs)

    monkeypatch.setattr(np, "savez", savez)
    cfg = write_config(tmp_path, seeds="[0]", loss_block='[loss]\nname = "xent"\n')
    assert main(["run", "--config", str(cfg), "--workers", "1"]) == 2
    (line,) = errors(capsys.readouterr().err)
    assert line.startswith("error: disk full while storing stage 'transfer[xent]' in ")
    assert "free space or choose another --output-dir (finished stages are kept)" in line
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["status"] == "partial"
    assert len(StageStore(tmp_path / "out").stored_ids()) == 3  # weak, labels, ceiling


class OOMLoss:
    """Raises torch's out-of-memory error on the first step, as a too-large batch on a GPU does."""

    def __call__(self, logits, targets, step_frac=0.0):
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


class OOMPlugin:
    @staticmethod
    @hookimpl
    def w2s_register_losses(registry):
        registry.add("oom", OOMLoss, description="runs out of memory (test)")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_out_of_memory_stage_is_one_line_with_the_fix(tmp_path, capsys, workers):
    cfg = write_config(tmp_path, seeds="[0]", loss_block='[loss]\nname = "oom"\n')
    assert main(["run", "--config", str(cfg), "--workers", workers], plugins=[OOMPlugin()]) == 2
    (line,) = errors(capsys.readouterr().err)
    assert line == ("error: stage 'transfer[oom]' ran out of GPU memory; lower the model's batch_size (e.g. [strong] "
                    "batch_size = 8; embed_batch_size for hf: encoders) or use a smaller model; finished stages "
                    "are kept")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["status"] == "partial" and len(StageStore(tmp_path / "out").stored_ids()) == 3


@pytest.mark.parametrize("bad", ["../../etc", "0123456789abcdeF", "0123", "", "0123456789abcdef/.."])
def test_stage_ids_are_validated_before_they_become_paths(tmp_path, bad):
    with pytest.raises(W2SError, match="invalid stage id"):
        check_stage_id(bad)
    with pytest.raises(W2SError, match="invalid stage id"):
        StageStore(tmp_path).load(bad)


def test_a_stage_file_holding_a_pickle_is_refused_not_executed(tmp_path, capsys):
    """An untrusted results directory: an artifact with an object array (a pickle) whose manifest matches."""
    cfg = write_config(tmp_path, seeds="[0]", loss_block='[loss]\nname = "xent"\n')
    assert main(["run", "--config", str(cfg), "--workers", "1"]) == 0
    store = StageStore(tmp_path / "out")
    sid = store.stored_ids()[0]
    d = store.root / sid
    np.savez(d / "artifact.npz", probs=np.array([object()], dtype=object))
    from w2s_harness._execution.store import file_sha256

    manifest = json.loads((d / "manifest.json").read_text())
    manifest["files"]["artifact.npz"] = file_sha256(d / "artifact.npz")
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptStage, match="allow_pickle"):
        store.load(sid)
    # report reads results.json only (JSON), and a run treats the stage as corrupt and recomputes it
    capsys.readouterr()
    assert main(["report", str(tmp_path / "out"), "--no-plots"]) == 0
    assert main(["run", "--config", str(cfg), "--workers", "1"]) == 0
    assert f"({sid})" in capsys.readouterr().err


def test_a_bad_feature_chunk_is_a_config_error(tmp_path, capsys):
    cfg = write_config(tmp_path, seeds="[0]")
    assert main(["run", "--config", str(cfg), "--feature-chunk", "0"]) == 2
    (line,) = errors(capsys.readouterr().err)
    assert line == "error: run.feature_chunk must be a positive integer (texts per chunk), got 0"
