"""``--track wandb``: the run as a Weights & Biases run, offline by default.

Offline (the default; ``WANDB_MODE=online`` streams it), the run is written to ``OUTPUT_DIR/wandb/offline-run-*``
(or under ``WANDB_DIR`` when set) and uploaded later with ``wandb sync OUTPUT_DIR/wandb/offline-run-*``. The
project is ``WANDB_PROJECT``, else ``w2s``. It holds the config (``wandb.config``), the stage metrics as history (``<stage name>/test_acc``, ``.../seconds``,
with ``seed``), a ``per_seed`` table (one row per seed and row: accuracies and PGR, for W&B's charts), the
summary rows in the run summary (``<row>/pgr_mean``, ``pgr_ci_low``, ...), ``results.json`` and the figures
(``figures/<name>``). Tags: the strategy and ``seeds:<n>``; the group is the output folder, so runs of one
experiment line up in W&B's grouping.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import Tracker, draw_figures, metric_key, per_seed_rows, stage_metrics, summary_rows


def make(options: dict) -> WandbTracker:
    return WandbTracker(options)


class WandbTracker(Tracker):
    name = "wandb"

    def _start(self, config) -> None:
        import wandb

        out = Path(config.run.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        # offline unless WANDB_MODE says otherwise: a run never uploads anything unasked
        mode = os.environ.get("WANDB_MODE") or "offline"
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "w2s", mode=mode,
            # the run folder next to results.json, unless WANDB_DIR chooses (wandb reads it when dir is None)
            dir=None if os.environ.get("WANDB_DIR") else str(out),
            config=config.to_dict(), group=out.name, job_type="w2s-run",
            tags=[config.strategy.name, f"seeds:{len(config.run.seeds)}"],
            name=f"{config.strategy.name} {out.name}", reinit="create_new",
            settings=wandb.Settings(console="off", silent=True),
        )

    def _stage(self, stage, record) -> None:
        prefix = metric_key(stage.name)
        self.run.log({"seed": stage.seed, **{f"{prefix}/{k}": v for k, v in stage_metrics(record).items()}})

    def _end(self, results) -> None:
        import wandb

        rows = [[seed, *key.rsplit("/", 1), v] for seed, values in per_seed_rows(results).items()
                for key, v in values.items()]  # key: "<row>/<metric>", and a row name may hold "/"
        self.run.log({"per_seed": wandb.Table(columns=["seed", "row", "metric", "value"], data=rows)})
        for key, value in summary_rows(results).items():
            self.run.summary[key] = value
        for e in results.experiments:
            if e.pgr.na:
                self.run.summary[f"{metric_key(e.name)}/pgr"] = f"n/a: {e.pgr.na}"
        self.run.summary["status"] = results.status
        # a file in the run's own folder is part of the run (uploaded by `wandb sync` / at finish online)
        (Path(self.run.dir) / "results.json").write_text(results.to_json(), encoding="utf-8")
        with tempfile.TemporaryDirectory(prefix="w2s-wandb-") as tmp:  # wandb.Image copies the file into the run
            figures = draw_figures(results, Path(tmp))
            self.run.log({f"figures/{p.stem}": wandb.Image(str(p)) for p in figures})
        self.run.finish(exit_code=0 if results.status == "complete" else 1)
