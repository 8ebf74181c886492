"""Output when stdout / stderr are not a terminal (a log, a pipe, CI): progress as plain lines while the run goes,
and tables whose long cells wrap instead of ending in an ellipsis. Run as subprocesses with pipes, as a CI job
or ``w2s-harness run 2>&1 | tee log`` would."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

from rich.console import Console
from test_pipeline import write_config
from test_summaries import build

from w2s_harness._cli.progress_lines import STEP_PERCENT, LineProgress


def piped(argv, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TERM")}
    proc = subprocess.run([sys.executable, "-m", "w2s_harness", *argv], capture_output=True, text=True,
                          env={**base, **env}, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_run_without_a_terminal_prints_progress_lines(tmp_path):
    cfg = write_config(tmp_path, seeds="[3]", loss_block='[loss]\nname = "xent"\n')
    err = piped(["run", "--config", str(cfg)]).stderr
    assert "\x1b[" not in err  # no escape codes
    assert "stages (ran" not in err and "0:00:" not in err  # no rich bars drawn at the end
    stages = ["weak", "weak labels", "ceiling", "transfer[xent]"]  # naive, one seed
    for name in stages:
        assert f"started  {name} (seed 3, " in err
        assert re.search(rf"\[\d/4\] finished {re.escape(name)} \(seed 3\) in \d+\.\d s", err), err
    # each stage starts before it finishes
    for name in stages:
        assert err.index(f"started  {name} (") < err.index(f"finished {name} (")
    assert "embedding with glove-bow: started (320 rows)" in err
    assert "embedding with glove-bow: 100% (320/320)" in err
    assert err.index("finished transfer[xent]") < err.index("Weak-to-strong results")
    again = piped(["run", "--config", str(cfg)]).stderr
    assert "[4/4] 4 stages loaded from the stage cache" in again and "started" not in again


def test_inner_loops_report_every_step_percent():
    console = Console(file=io.StringIO(), width=200, color_system=None)
    with LineProgress(console) as progress:
        advance = progress.inner("embedding with m", 1000)
        for _ in range(40):
            advance(25)
    lines = console.file.getvalue().splitlines()
    assert lines[0] == "embedding with m: started (1000 rows)"
    percents = [int(re.search(r": (\d+)% \((\d+)/1000\)", line).group(1)) for line in lines[1:]]
    assert percents == list(range(STEP_PERCENT, 101, STEP_PERCENT))


def test_piped_tables_wrap_long_names_instead_of_truncating(tmp_path):
    loss = "logconf_" + "x" * 60 + "_end"
    results = build({f"naive/{loss}": {s: (0.6, 0.8, 0.7) for s in range(5)}})
    (tmp_path / "results.json").write_text(results.to_json())
    err = piped(["report", str(tmp_path), "--no-plots"], COLUMNS="90").stderr
    assert "…" not in err
    # the whole name is there, folded over several lines of its cell
    cells = "".join(line.split("│")[3].strip() for line in err.splitlines() if line.startswith("│"))
    assert loss in cells
    assert max(len(line) for line in err.splitlines() if line.startswith(("│", "┃"))) <= 90


def test_cache_hits_are_one_line_before_the_next_computed_stage():
    from types import SimpleNamespace as NS

    console = Console(file=io.StringIO(), width=200, color_system=None)
    stage = [NS(id=f"s{i}", name=f"stage {i}", seed=0, kind="train_weak") for i in range(5)]
    with LineProgress(console) as progress:
        for i in range(3):
            progress.on_stage(stage[i], NS(cached=True, seconds=None), i + 1, 5)
        progress.on_start(stage[3])
        progress.on_stage(stage[3], NS(cached=False, seconds=2.5), 4, 5)
        progress.on_stage(stage[4], NS(cached=True, seconds=None), 5, 5)
    assert console.file.getvalue().splitlines() == [
        "[3/5] 3 stages loaded from the stage cache",
        "started  stage 3 (seed 0, train_weak)",
        "[4/5] finished stage 3 (seed 0) in 2.5 s",
        "[5/5] 1 stage loaded from the stage cache",
    ]
