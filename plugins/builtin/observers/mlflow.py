"""``--track mlflow``: the run as an MLflow run, each seed as a nested child run.

The parent run holds the config (params), the summary rows (PGR mean / CI / median / seeds per row, the paired
comparisons), ``results.json`` and the figures (artifacts under ``figures/``); one child run per seed (tags
``seed`` and ``mlflow.parentRunId``) holds that seed's stage metrics (``<stage name>/test_acc``,
``<stage name>/seconds``, ...) and its rows' accuracies and PGR, so MLflow's run comparison lines the seeds up.

The store is ``--mlflow-uri`` (a server, ``http://host:5000``, or any store URI), else ``MLFLOW_TRACKING_URI``,
else a local SQLite store in ``./mlruns`` (``mlruns/mlflow.db``, artifacts in ``mlruns/artifacts``): MLflow 3
refuses its old file store unless ``MLFLOW_ALLOW_FILE_STORE=true``. Browse it with
``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``. The experiment is ``MLFLOW_EXPERIMENT_NAME``, else
``w2s``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from . import Tracker, draw_figures, flat_config, metric_key, per_seed_rows, stage_metrics, summary_rows

#: the local store used when neither --mlflow-uri nor MLFLOW_TRACKING_URI names one
LOCAL_DIR = "mlruns"


def make(options: dict) -> MlflowTracker:
    return MlflowTracker(options)


def local_store(folder: Path) -> tuple[str, str]:
    """``(tracking URI, artifact location)`` of the SQLite store in ``folder``."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


class MlflowTracker(Tracker):
    name = "mlflow"

    def _start(self, config) -> None:
        from mlflow.tracking import MlflowClient

        uri, artifacts = self.options.get("mlflow_uri") or os.environ.get("MLFLOW_TRACKING_URI"), None
        if not uri:
            uri, artifacts = local_store(Path(LOCAL_DIR))
        self.client = client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "w2s"  # MLflow's own variable for it
        experiment = client.get_experiment_by_name(name)
        self.experiment_id = (experiment.experiment_id if experiment is not None
                              else client.create_experiment(name, artifact_location=artifacts))
        doc = config.to_dict()
        tags = {"strategy": config.strategy.name, "w2s.output_dir": str(config.run.output_dir)}
        run = client.create_run(self.experiment_id, run_name=f"{config.strategy.name} {Path(config.run.output_dir).name}",
                                tags=tags)
        self.run_id = run.info.run_id
        self.uri = uri
        params = flat_config(doc)
        # MLflow caps a param value's length; the whole config is also an artifact (config.json)
        client.log_batch(self.run_id, params=[_param(k, v) for k, v in params.items()])
        client.log_text(self.run_id, json.dumps(doc, indent=2, default=str), "config.json")
        self.seed_runs: dict[int, str] = {}

    def _seed_run(self, seed: int) -> str:
        """The child run of ``seed``, created on its first stage."""
        if seed not in self.seed_runs:
            child = self.client.create_run(self.experiment_id, run_name=f"seed {seed}",
                                           tags={"mlflow.parentRunId": self.run_id, "seed": str(seed)})
            self.seed_runs[seed] = child.info.run_id
        return self.seed_runs[seed]

    def _stage(self, stage, record) -> None:
        from mlflow.entities import Metric

        run_id = self._seed_run(stage.seed)
        prefix = metric_key(stage.name)
        metrics = [Metric(f"{prefix}/{k}", v, 0, 0) for k, v in stage_metrics(record).items()]
        self.client.log_batch(run_id, metrics=metrics)

    def _end(self, results) -> None:
        from mlflow.entities import Metric

        client = self.client
        for seed, values in per_seed_rows(results).items():
            client.log_batch(self._seed_run(seed), metrics=[Metric(k, v, 0, 0) for k, v in values.items()])
        summary = summary_rows(results)
        client.log_batch(self.run_id, metrics=[Metric(k, v, 0, 0) for k, v in summary.items()])
        for e in results.experiments:  # a row without a PGR says why, where the numbers would be
            if e.pgr.na:
                client.set_tag(self.run_id, f"{metric_key(e.name)}/pgr", f"n/a: {e.pgr.na}")
        client.set_tag(self.run_id, "status", results.status)
        client.log_text(self.run_id, results.to_json(), "results.json")
        with tempfile.TemporaryDirectory(prefix="w2s-mlflow-") as tmp:
            for path in draw_figures(results, Path(tmp)):
                client.log_artifact(self.run_id, str(path), "figures")
        state = "FINISHED" if results.status == "complete" else "FAILED"
        for run_id in self.seed_runs.values():
            client.set_terminated(run_id, state)
        client.set_terminated(self.run_id, state)


def _param(key: str, value: str):
    from mlflow.entities import Param

    return Param(key, value if len(value) <= 6000 else value[:5990] + " ...")
