"""The runner end to end on a tiny real dataset: stage cache, resume, results.json, report, failure paths.

Everything here is real: the ``local`` dataset reads a CSV through HF ``datasets``, ``glove-bow`` embeds with
the real GloVe vectors, heads really train. Weak and strong are both GloVe models (the strong one trains
longer) so the suite stays fast; the model ladder itself is covered in test_strategies*.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from run_config import local_run_config

from w2s_harness import hookimpl
from w2s_harness._cli.cli import main

POS = ["good", "great", "excellent", "happy", "love", "wonderful", "best", "nice", "fantastic", "enjoyed"]
NEG = ["bad", "terrible", "awful", "sad", "hate", "worst", "horrible", "poor", "boring", "disappointing"]
FILL = ["the", "movie", "was", "a", "really", "plot", "and", "actors", "it", "film", "story", "so"]


def make_csv(path: Path, n: int = 320, noise: float = 0.15, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = ["text,label"]
    for _ in range(n):
        label = int(rng.integers(0, 2))
        words = list(rng.choice(FILL, size=6))
        cue = POS if label else NEG
        for _ in range(int(rng.integers(1, 3))):
            words.insert(int(rng.integers(0, len(words))), str(rng.choice(cue)))
        if rng.random() < noise:  # label noise keeps accuracies below 1 so PGR is defined
            label = 1 - label
        rows.append(f"{' '.join(words)},{'pos' if label else 'neg'}")
    path.write_text("\n".join(rows) + "\n")
    return path


def write_config(tmp_path: Path, loss_block: str = '[[loss]]\nname = "xent"\n[[loss]]\nname = "logconf"\n',
                 seeds: str = "[0, 1]") -> Path:
    return local_run_config(tmp_path / "run.toml", make_csv(tmp_path / "reviews.csv"), seeds=seeds,
                            out=tmp_path / "out", losses=loss_block, run="",
                            weak='name = "glove-bow"\nepochs = 1\nlr = 0.003',
                            strong='name = "glove-bow"\nepochs = 20\nlr = 0.01')


def run_json(argv, capsys) -> dict:
    code = main(argv + ["--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_run_writes_schema_and_rerun_is_fully_cached(tmp_path, capsys):
    cfg = write_config(tmp_path)
    first = run_json(["run", "--config", str(cfg)], capsys)
    assert first["schema_version"] == 1 and first["status"] == "complete"
    assert first["config"]["dataset"]["name"] == "local"
    assert [loss["name"] for loss in first["config"]["loss"]] == ["xent", "logconf"]
    assert first["environment"]["torch"] and first["environment"]["device"] == "cpu"
    names = [e["name"] for e in first["experiments"]]
    assert names == ["naive/xent", "naive/logconf"]
    for e in first["experiments"]:
        assert e["seeds"] == [0, 1]
        for key in ("weak_acc", "ceiling_acc", "transfer_acc"):
            assert all(0.0 <= v <= 1.0 for v in e[key]["per_seed"])
        # PGR is recomputed from the per-seed accuracies exactly as the reference defines it
        for w, c, t, p in zip(e["weak_acc"]["per_seed"], e["ceiling_acc"]["per_seed"],
                              e["transfer_acc"]["per_seed"], e["pgr"]["per_seed"]):
            assert p is None if c <= w else p == pytest.approx((t - w) / (c - w))
    # per seed: weak, weak labels, ceiling, 2 transfers = 5 stages; all computed the first time
    kinds = sorted(s["kind"] for s in first["stages"])
    assert kinds == sorted(["train_weak", "label", "train_ceiling", "train_transfer", "train_transfer"] * 2)
    assert not any(s["cached"] for s in first["stages"])
    cmp = first["comparisons"][0]
    assert (cmp["a"], cmp["b"], cmp["seeds"]) == ("naive/logconf", "naive/xent", 2)

    second = run_json(["run", "--config", str(cfg)], capsys)
    assert all(s["cached"] for s in second["stages"])
    assert second["timings"]["stages_computed"] == 0
    assert second["experiments"] == first["experiments"]


def test_changing_a_loss_parameter_reruns_only_transfer(tmp_path, capsys):
    cfg = write_config(tmp_path, seeds="[0]")
    run_json(["run", "--config", str(cfg)], capsys)
    again = run_json(["run", "--config", str(cfg), "--set", "loss.aux_coef=0.3"], capsys)
    computed = [s for s in again["stages"] if not s["cached"]]
    assert [(s["kind"], s["name"]) for s in computed] == [("train_transfer", "transfer[logconf(aux_coef=0.3)]")]
    # the xent transfer, weak, labels and ceiling were reused
    assert sum(s["cached"] for s in again["stages"]) == 4


def test_no_resume_recomputes_and_reproduces_numbers(tmp_path, capsys):
    cfg = write_config(tmp_path, seeds="[0]", loss_block='[loss]\nname = "xent"\n')
    a = run_json(["run", "--config", str(cfg)], capsys)
    b = run_json(["run", "--config", str(cfg), "--no-resume"], capsys)
    assert not any(s["cached"] for s in b["stages"])
    assert b["experiments"][0]["transfer_acc"] == a["experiments"][0]["transfer_acc"]


def test_dry_run_and_validate_execute_nothing(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert main(["run", "--config", str(cfg), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "10 stages: 0 cached, 10 new, 0 changed (dry run" in err
    assert not (tmp_path / "out" / "results.json").exists()
    assert main(["validate", "--config", str(cfg)]) == 0
    assert "config OK: 10 stages over 2 seeds" in capsys.readouterr().out


def test_report_rerenders_table_and_writes_plots(tmp_path, capsys):
    cfg = write_config(tmp_path, seeds="[0]")
    run_json(["run", "--config", str(cfg)], capsys)
    assert main(["report", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "naive" in err and "PGR" in err
    for png in ("accuracy.png", "pgr.png"):
        data = (tmp_path / "out" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


class DivergingLoss:
    """Soft cross-entropy that turns NaN halfway through training, as a diverging run does."""

    def __call__(self, logits, targets, step_frac=0.0):
        import torch

        loss = -(targets * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()
        return loss * float("nan") if step_frac > 0.5 else loss


class DivergingPlugin:
    @staticmethod
    @hookimpl
    def w2s_register_losses(registry):
        registry.add("diverging", DivergingLoss, description="NaN after half of training (test)")


@pytest.mark.parametrize("workers", ["1", "2"])  # in-process, and raised in a worker process
def test_nan_loss_fails_with_one_line_and_keeps_partial_results(tmp_path, capsys, workers):
    cfg = write_config(tmp_path, seeds="[0]", loss_block='[loss]\nname = "diverging"\n')
    code = main(["run", "--config", str(cfg), "--workers", workers], plugins=[DivergingPlugin()])
    err = capsys.readouterr().err
    assert code == 2
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "transfer[diverging]" in line[0] and "epoch" in line[0] and "lr" in line[0]
    assert "Traceback" not in err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["status"] == "partial" and "nan" in results["error"].lower()
    finished = {s["kind"] for s in results["stages"] if s["cached"] is not None}
    assert finished == {"train_weak", "label", "train_ceiling"}  # kept; the transfer is not
    # switching to a sane loss resumes: weak, labels and ceiling come from the cache
    again = run_json(["run", "--config", str(cfg), "--loss", "xent"], capsys)
    assert {s["kind"] for s in again["stages"] if s["cached"]} == {"train_weak", "label", "train_ceiling"}


def test_unknown_component_gives_did_you_mean(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert main(["run", "--config", str(cfg), "--loss", "logcnf"]) == 2
    err = capsys.readouterr().err
    assert "unknown loss 'logcnf'" in err and "Did you mean: logconf" in err
    assert "see `w2s-harness list losses`" in err  # a command that exists


def test_cli_subprocess_json_output(tmp_path):
    cfg = write_config(tmp_path, seeds="[3]", loss_block='[loss]\nname = "xent"\n')
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "w2s_harness", "run", "--config", str(cfg), "--json"],
                          check=False, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    exp = results["experiments"][0]
    assert exp["seeds"] == [3] and exp["strategy"] == "naive" and exp["loss"] == "xent"
    assert exp["weak"] == "glove-bow" and exp["strong"] == "glove-bow"
    assert "Weak-to-strong results" in proc.stderr  # the rich table goes to stderr
    assert "\x1b[" not in proc.stderr  # NO_COLOR / non-TTY: no escape codes
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["experiments"] == results["experiments"]
