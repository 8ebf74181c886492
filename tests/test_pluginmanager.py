"""Plugin manager: entry points of a really installed package, broken plugins, strict mode, the example plugin.

Entry-point tests run ``python -m w2s_harness`` in a subprocess with ``PYTHONPATH`` pointing at a directory that
holds the plugin distribution (pip-installed with ``--target``, or a hand-written ``.dist-info``), so nothing
is installed into the test environment itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from w2s_harness import hookimpl
from w2s_harness._config import Component, RunConfig
from w2s_harness._errors import ConfigError, PluginError
from w2s_harness._pluginmanager import create_plugin_manager

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "w2s-harness-example-plugin"
EXAMPLE_LINE = ("example  w2s-harness-example-plugin 0.1.0  datasets: example-parity; "
                "losses: example-smoothed-xent; strategies: example-naive-twice; hooks: w2s_run_end")
MISSING = "frobnicate_does_not_exist"
BROKEN_ERROR = f"ModuleNotFoundError: No module named '{MISSING}'"


def cli(*args: str, path: list[Path] = (), env: dict[str, str] | None = None, cwd=None):
    """Run ``python -m w2s_harness ARGS`` with extra ``PYTHONPATH`` entries; returns the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("W2S_STRICT_PLUGINS", "PYTHONPATH")}
    full_env.update({"COLUMNS": "250", "NO_COLOR": "1", "PYTHONPATH": os.pathsep.join(map(str, path))})
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "w2s_harness", *args], check=False, capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120)


@pytest.fixture(scope="session")
def example_site(tmp_path_factory) -> Path:
    """The example plugin, really installed (built by pip from its pyproject) into a --target directory."""
    pytest.importorskip("setuptools")  # the build backend, used without build isolation (offline)
    root = tmp_path_factory.mktemp("example-plugin")
    src = root / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--quiet", "--target", str(site), str(src)],
        check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "w2s_harness_example_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    return site


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory) -> Path:
    """A distribution whose entry-point module fails to import (hand-written dist-info, no pip needed)."""
    site = tmp_path_factory.mktemp("broken-site")
    (site / "broken_w2s_plugin.py").write_text(f"import {MISSING}\n")
    info = site / "broken_w2s_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-w2s-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[w2s_harness]\nbroken = broken_w2s_plugin\n")
    return site


# ------------------------------------------------------------------------- a real installed package


def test_installed_plugin_is_loaded_from_its_entry_point(example_site):
    proc = cli("plugins", path=[example_site])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert EXAMPLE_LINE in lines
    [builtin] = [line for line in lines if line.startswith("builtin:strategies  w2s-harness 0.1.0  strategies: ")]
    assert "naive" in builtin.split("strategies: ")[1].split(", ")
    assert proc.stderr == ""

    proc = cli("list", path=[example_site])
    assert proc.returncode == 0, proc.stderr
    for name in ("example-parity", "example-smoothed-xent", "example-naive-twice"):
        [line] = [line for line in proc.stdout.splitlines() if line.split()[:1] == [name]]
        assert line.endswith("(example)"), line


def test_installed_plugin_in_process(example_site, monkeypatch):
    assert "example" not in [p.name for p in create_plugin_manager().plugins]  # not installed here
    monkeypatch.syspath_prepend(str(example_site))
    pm = create_plugin_manager(strict=True)
    [info] = [p for p in pm.plugins if p.name == "example"]
    assert (info.distribution, info.version, info.builtin) == ("w2s-harness-example-plugin", "0.1.0", False)
    assert pm.registered_by("example") == {"dataset": ["example-parity"], "loss": ["example-smoothed-xent"],
                                           "strategy": ["example-naive-twice"]}
    assert pm.load_errors == []
    assert pm.registry("loss").resolve("example-smoothed-xent")[0].plugin == "example"


# ---------------------------------------------------------------------------------- broken plugins


def test_broken_plugin_is_reported_by_name_and_skipped(broken_site, example_site):
    proc = cli("list", path=[broken_site, example_site])
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [(
        f"warning: plugin 'broken' failed to load and was skipped: {BROKEN_ERROR} "
        f"(use --strict-plugins to make this fatal)")]
    assert "example-parity" in proc.stdout and "naive" in proc.stdout  # everything else still loads

    proc = cli("plugins", path=[broken_site, example_site])
    assert proc.returncode == 0
    assert EXAMPLE_LINE in proc.stdout.splitlines()
    assert f"broken  failed to load (skipped): {BROKEN_ERROR}" in proc.stdout.splitlines()


STRICT_ERROR = (f"plugin 'broken' (from broken-w2s-plugin) failed to import: {BROKEN_ERROR}; "
                f"fix or uninstall it, or run without --strict-plugins to skip it")


def test_strict_plugins_flag_is_fatal(broken_site):
    proc = cli("--strict-plugins", "list", path=[broken_site])
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: " + STRICT_ERROR]
    assert proc.stdout == ""


def test_strict_plugins_env_is_fatal(broken_site):
    proc = cli("plugins", path=[broken_site], env={"W2S_STRICT_PLUGINS": "1"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: " + STRICT_ERROR]


def test_broken_plugin_in_process(broken_site, monkeypatch):
    monkeypatch.syspath_prepend(str(broken_site))
    monkeypatch.delenv("W2S_STRICT_PLUGINS", raising=False)
    pm = create_plugin_manager()
    assert [(e.name, e.error) for e in pm.load_errors] == [("broken", BROKEN_ERROR)]
    assert "broken" not in [p.name for p in pm.plugins]
    assert "broken_w2s_plugin" not in sys.modules
    for value, fatal in [("true", True), ("yes", True), ("0", False), ("", False)]:
        monkeypatch.setenv("W2S_STRICT_PLUGINS", value)
        if fatal:
            with pytest.raises(PluginError) as info:
                create_plugin_manager()
            assert str(info.value) == STRICT_ERROR
        else:
            assert [e.name for e in create_plugin_manager().load_errors] == ["broken"]
    monkeypatch.setenv("W2S_STRICT_PLUGINS", "1")
    assert [e.name for e in create_plugin_manager(strict=False).load_errors] == ["broken"]  # explicit wins


def test_entry_point_collision_names_both_plugins(tmp_path, example_site, monkeypatch):
    """A second installed plugin that registers a name the example plugin already registered."""
    (tmp_path / "clash_w2s_plugin.py").write_text(
        "from w2s_harness import hookimpl\n"
        "@hookimpl\n"
        "def w2s_register_losses(registry):\n"
        "    registry.add('example-smoothed-xent', dict)\n")
    info = tmp_path / "clash_w2s_plugin-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clash-w2s-plugin\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[w2s_harness]\nclash = clash_w2s_plugin\n")
    monkeypatch.syspath_prepend(str(example_site))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as exc:
        create_plugin_manager()
    msg = str(exc.value)
    assert msg.startswith("loss 'example-smoothed-xent' is registered by both plugin ")
    assert "'example'" in msg and "'clash'" in msg


# ------------------------------------------------------------------ the example plugin's components


@pytest.fixture
def example_pm(monkeypatch):
    """The example plugin's module, registered in-process straight from its source tree."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    return create_plugin_manager(plugins=["w2s_example_plugin", TinyModels()], entry_points=False)


class _PlannedModel:
    """A fine-tune model that is only planned with (planning never builds a model)."""

    def __init__(self, **params):
        self.params = params

    def identity(self):
        return dict(self.params)

    def classifier(self, n_classes, device):
        raise AssertionError("planning never builds a model")


class TinyModels:
    @hookimpl
    def w2s_register_models(self, registry):
        registry.add("t-weak", _PlannedModel)
        registry.add("t-strong", _PlannedModel)


def test_example_dataset(example_pm):
    ds = example_pm.create("dataset", "example-parity")
    data = ds.load()
    assert len(data) == 400 and data.class_names == ["even", "odd"] and data.n_classes == 2
    for text, label in zip(data.texts, data.labels):
        assert int(text.split()[2]) % 2 == label
    s0, s1 = ds.splits(0), ds.splits(1)
    assert (len(s0.train1), len(s0.train2), len(s0.test)) == (160, 160, 80)
    assert not set(s0.train1) & set(s0.train2) and not set(s0.train2) & set(s0.test)
    assert list(s0.test) == list(s1.test) and list(s0.train1) != list(s1.train1)
    ident = ds.identity()
    assert ident["name"] == "example-parity" and ident["n"] == 400 and len(ident["fingerprint"]) == 64
    assert example_pm.create("dataset", "example-parity", seed=1).identity()["fingerprint"] != ident["fingerprint"]
    small = example_pm.create("dataset", "example-parity", n=50, n_test=10)
    assert small.split_sizes() == (20, 20, 10)
    with pytest.raises(ConfigError, match=r"dataset 'example-parity' has no parameter 'size'\. Did you mean: seed\? "
                                          r"Valid parameters: "
                                          r"max_number, n, n_test, n_train, seed, test_seed"):
        example_pm.create("dataset", "example-parity", size=3)


def test_example_loss_matches_torch_label_smoothing(example_pm):
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 3, generator=gen, requires_grad=True)
    ids = torch.randint(0, 3, (16,), generator=gen)
    loss = example_pm.create("loss", "example-smoothed-xent")
    assert loss.smoothing == 0.1
    expected = torch.nn.functional.cross_entropy(logits, ids, label_smoothing=0.1)
    torch.testing.assert_close(loss(logits, ids), expected)
    soft = torch.softmax(torch.randn(16, 3, generator=gen), dim=-1)
    plain = example_pm.create("loss", "example-smoothed-xent", smoothing=0.0)
    torch.testing.assert_close(plain(logits, soft, step_frac=0.5), torch.nn.functional.cross_entropy(logits, soft))
    loss(logits, soft).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ConfigError, match=r"smoothing must be in \[0, 1\), got 1\.5"):
        example_pm.create("loss", "example-smoothed-xent", smoothing=1.5)


def _config(losses, strategy_params=None, seeds=(0, 1)):
    cfg = RunConfig.default()
    cfg.dataset = Component("example-parity", {"n": 60})
    cfg.weak, cfg.strong = Component("t-weak"), Component("t-strong", {"width": 2})
    cfg.losses = losses
    cfg.strategy = Component("example-naive-twice", strategy_params or {})
    cfg.run.seeds = list(seeds)
    return cfg


def test_example_strategy_plans_through_the_plan_builder(example_pm):
    from w2s_harness._plan import make_plan

    losses = [Component("example-smoothed-xent"), Component("example-smoothed-xent", {"smoothing": 0.2})]
    plan = make_plan(_config(losses), example_pm)
    # per seed: weak, weak labels, ceiling + per loss (student1, its labels, student2)
    assert len(plan.stages) == 2 * (3 + 2 * 3)
    names = [e.name for e in plan.experiments[0]]
    assert names == ["example-naive-twice/example-smoothed-xent",
                     "example-naive-twice/example-smoothed-xent(smoothing=0.2)"]
    seed0 = {s.id: s for s in plan.stages if s.seed == 0}
    exp = plan.experiments[0][0]
    student2 = seed0[exp.transfer.id]
    assert student2.name == "student2[example-smoothed-xent]" and student2.kind == "train_transfer"
    [label_dep] = student2.deps
    assert seed0[label_dep].op == "label" and seed0[seed0[label_dep].deps[0]].name == "student1[example-smoothed-xent]"
    assert [(c.a, c.b) for c in plan.comparisons] == [(names[1], names[0])]

    one_round = make_plan(_config(losses[:1], {"rounds": 1}, seeds=[0]), example_pm)
    assert len(one_round.stages) == 4
    with pytest.raises(ConfigError, match="rounds must be a positive integer, got 0"):
        make_plan(_config(losses, {"rounds": 0}), example_pm)


def test_example_observer_writes_only_when_asked(example_pm, tmp_path, monkeypatch):
    results = {"status": "complete", "experiments": [
        {"strategy": "example-naive-twice", "loss": "example-smoothed-xent", "pgr": {"mean": 0.25}}]}
    log = tmp_path / "runs.jsonl"
    monkeypatch.delenv("W2S_EXAMPLE_RUN_LOG", raising=False)
    example_pm.hook.w2s_run_end(results=results)
    assert not log.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setenv("W2S_EXAMPLE_RUN_LOG", str(log))
    example_pm.hook.w2s_run_end(results=results)
    example_pm.hook.w2s_run_end(results={**results, "status": "partial"})
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines == [
        {"status": "complete", "experiments": {"example-naive-twice/example-smoothed-xent": 0.25}},
        {"status": "partial", "experiments": {"example-naive-twice/example-smoothed-xent": 0.25}},
    ]
