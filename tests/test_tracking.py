"""``run --track mlflow`` / ``--track wandb``: the built-in tracking observers, on a real small run (L-BFGS heads on
a tiny CSV, two losses, two seeds), read back with the trackers' own formats: the MLflow store through
``MlflowClient``, the W&B offline run through its ``.wandb`` record log. No network: MLflow writes a local SQLite
store, W&B runs offline (``WANDB_MODE=offline``, ``WANDB_DIR`` in the test's folder). Each library's tests skip,
saying so, where it is not installed (``pip install 'w2s-harness[mlflow]'`` / ``'[wandb]'``)."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest
from test_figures import lbfgs_toml

from w2s_harness import Results
from w2s_harness._cli.cli import main

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="mlflow not installed: pip install 'w2s-harness[mlflow]'")
needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                                 reason="wandb not installed: pip install 'w2s-harness[wandb]'")
FIGURES = {"accuracy.png", "pgr.png", "comparisons.png", "misfit.png", "curves.png"}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """The run's config; its stages are computed once (a first run) and served from the cache afterwards."""
    tmp = tmp_path_factory.mktemp("track")
    cfg = lbfgs_toml(tmp)
    assert main(["run", "--config", str(cfg), "--set", "strong.curve_every=2"]) == 0
    return cfg


def tracked_run(config: Path, capsys, *flags: str) -> Results:
    assert main(["run", "--config", str(config), "--set", "strong.curve_every=2", *flags]) == 0
    capsys.readouterr()
    return Results.read(config.parent / "out")


def stage_acc(results: Results, name: str, seed: int) -> float:
    return next(s.metrics["test_acc"] for s in results.stages if s.name == name and s.seed == seed)


# ------------------------------------------------------------------------------------------------ MLflow


@needs_mlflow
def test_mlflow_logs_config_seeds_summary_and_figures(config, tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # the default store is ./mlruns
    results = tracked_run(config, capsys, "--track", "mlflow")
    assert results.config["extra"] == {"track": "mlflow"}  # given options are recorded, the others are not
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("w2s")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {int(r.data.tags["seed"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert parent.info.status == "FINISHED" and parent.data.tags["status"] == "complete"
    assert parent.data.params["strong.name"] == "glove-bow" and parent.data.params["run.seeds"] == "[0, 1]"

    # the summary rows, as the report computes them
    for e in results.experiments:
        m = parent.data.metrics
        assert m[f"{e.name}/pgr_seeds_used"] == e.pgr.n and m[f"{e.name}/pgr_seeds_run"] == 2
        if e.pgr.na:
            assert parent.data.tags[f"{e.name}/pgr"] == f"n/a: {e.pgr.na}" and f"{e.name}/pgr_mean" not in m
        else:
            assert m[f"{e.name}/pgr_mean"] == pytest.approx(e.pgr.mean)
            assert m[f"{e.name}/pgr_median"] == pytest.approx(e.pgr.median)
            assert [m[f"{e.name}/pgr_ci_low"], m[f"{e.name}/pgr_ci_high"]] == pytest.approx(e.pgr.ci95)
    assert any(not e.pgr.na for e in results.experiments), "the run should have a PGR to log"
    c = results.comparisons[0]
    assert parent.data.metrics[f"{c.a} - {c.b}/wins"] == c.wins

    # one child run per seed: its stages' metrics and its rows' PGR on that seed
    assert sorted(children) == [0, 1]
    for seed, child in children.items():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id and child.info.status == "FINISHED"
        assert child.data.metrics["weak/test_acc"] == pytest.approx(stage_acc(results, "weak", seed))
        assert "weak/seconds" in child.data.metrics
        e = results.experiments[0]
        if e.pgr.per_seed[seed] is not None:
            assert child.data.metrics[f"{e.name}/pgr"] == pytest.approx(e.pgr.per_seed[seed])

    # artifacts: the figures, results.json and the config
    assert {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, "figures")} == FIGURES
    logged = Path(client.download_artifacts(parent.info.run_id, "results.json", str(tmp_path / "dl")))
    assert json.loads(logged.read_text())["experiments"] == json.loads(results.to_json())["experiments"]
    assert {f.path for f in client.list_artifacts(parent.info.run_id)} >= {"config.json", "results.json", "figures"}
    assert not list((config.parent / "out").glob("*.png"))  # run leaves the folder as it was: figures go to MLflow


@needs_mlflow
def test_mlflow_uri_names_the_store_and_a_broken_store_only_warns(config, tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    tracked_run(config, capsys, "--track", "mlflow", "--mlflow-uri", uri)
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # (MLflow's own artifact root may be ./mlruns)
    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name("mine")
    assert len(MlflowClient(tracking_uri=uri).search_runs([experiment.experiment_id])) == 3  # parent + 2 seeds
    # a tracker that cannot start never stops the run: one warning, results as usual
    assert main(["run", "--config", str(config), "--track", "mlflow", "--mlflow-uri", "nosuchscheme://x"]) == 0
    err = capsys.readouterr().err
    assert "warning: --track mlflow: starting the run failed" in err and "tracking is off" in err
    assert err.count("warning: --track mlflow") == 1 and "results:" in err


# ------------------------------------------------------------------------------------------------ errors


def test_unknown_tracker_and_missing_library_are_one_line_errors(config, capsys, monkeypatch):
    assert main(["validate", "--config", str(config), "--track", "comet"]) == 2
    assert capsys.readouterr().err.strip() == "error: --track 'comet': unknown tracker; use one of mlflow, wandb"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert main(["run", "--config", str(config), "--track", "wandb"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --track wandb needs the wandb package: "
                                               "pip install 'w2s-harness[wandb]'")


# ------------------------------------------------------------------------------------------ W&B (offline)


def wandb_records(path: Path) -> list:
    """The protobuf records of a W&B ``.wandb`` file. wandb >= 0.2x no longer ships a Python reader, so this
    reads the format itself: a 7-byte header (``:W&B``, magic 0xBEE1, version), then 32 KiB blocks of LevelDB-log
    chunks (4-byte checksum, 2-byte length, 1-byte type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1)
    pos, records, pending = 7, [], b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _items(updates) -> dict:
    return {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in updates}


@needs_wandb
def test_wandb_offline_run_holds_config_stage_history_summary_and_figures(config, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "w2s-test")
    results = tracked_run(config, capsys, "--track", "wandb")
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (log,) = run_dir.glob("run-*.wandb")
    records = wandb_records(log)
    by_kind: dict[str, list] = {}
    for r in records:
        by_kind.setdefault(r.WhichOneof("record_type"), []).append(r)
    (run,) = by_kind["run"]
    assert run.run.project == "w2s-test" and "naive" in run.run.tags and "seeds:2" in run.run.tags
    cfg = _items(run.run.config.update)
    for r in by_kind.get("config", []):
        cfg.update(_items(r.config.update))
    cfg = {k: v["value"] if isinstance(v, dict) and set(v) == {"value"} else v for k, v in cfg.items()}
    assert cfg["strong"]["name"] == "glove-bow" and cfg["run"]["seeds"] == [0, 1]

    # history: one row per finished stage, with its seed
    history = [_items(r.history.item) for r in by_kind["history"]]
    for seed in (0, 1):
        (weak,) = [h for h in history if h.get("seed") == seed and "weak/test_acc" in h]
        assert weak["weak/test_acc"] == pytest.approx(stage_acc(results, "weak", seed))
    summary = {}
    for r in by_kind["summary"]:
        summary.update(_items(r.summary.update))
    defined = [e for e in results.experiments if not e.pgr.na]
    assert defined
    for e in defined:
        assert summary[f"{e.name}/pgr_mean"] == pytest.approx(e.pgr.mean)
        assert summary[f"{e.name}/pgr_seeds_used"] == e.pgr.n
    assert summary["status"] == "complete"
    assert {f"figures/{Path(n).stem}/_type" for n in FIGURES} <= set(summary)  # logged as images
    assert len(list((run_dir / "files" / "media" / "images").rglob("*.png"))) == len(FIGURES)
    assert (json.loads((run_dir / "files" / "results.json").read_text())["experiments"]
            == json.loads(results.to_json())["experiments"])
    assert by_kind["exit"][0].exit.exit_code == 0
