"""Plugin manager: entry points of a really installed package, broken plugins, strict mode, the example plugin.

Entry-point tests run ``python -m w2s_harness`` in a subprocess with ``PYTHONPATH`` pointing at a directory that
holds the plugin distribution (pip-installed with ``--target``, or a hand-written ``.dist-info``), so nothing
is installed into the test environment itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from w2s_harness._contracts.errors import PluginError
from w2s_harness._plugin_system.manager import create_plugin_manager

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "w2s-harness-example-plugin"
EXAMPLE_LINE = ("example  w2s-harness-example-plugin 0.1.0  datasets: example-parity; models: example-charhash; "
                "losses: example-smoothed-xent; strategies: example-agreement, example-naive-twice; "
                "ops: example-agree; executors: example-threads; "
                "hooks: w2s_add_options, w2s_configure, w2s_report_views")
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
    for name in ("example-parity", "example-charhash", "example-smoothed-xent", "example-naive-twice",
                 "example-threads"):
        [line] = [line for line in proc.stdout.splitlines() if line.split()[:1] == [name]]
        assert line.endswith("(example)"), line


def test_installed_plugin_in_process(example_site, monkeypatch):
    assert "example" not in [p.name for p in create_plugin_manager().plugins]  # not installed here
    monkeypatch.syspath_prepend(str(example_site))
    pm = create_plugin_manager(strict=True)
    [info] = [p for p in pm.plugins if p.name == "example"]
    assert (info.distribution, info.version, info.builtin) == ("w2s-harness-example-plugin", "0.1.0", False)
    assert pm.registered_by("example") == {"dataset": ["example-parity"], "model": ["example-charhash"],
                                           "loss": ["example-smoothed-xent"],
                                           "strategy": ["example-agreement", "example-naive-twice"],
                                           "op": ["example-agree"],
                                           "executor": ["example-threads"]}
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


# ------------------------------------------------------------------ the example plugin's own test suite


def test_example_plugin_own_tests_pass_against_the_installed_package(example_site):
    """The example plugin's components, observer and CLI option are tested by its own suite (public API only, a
    template for a plugin's tests): run it with pytest against the pip-installed distribution."""
    pytest.importorskip("torch")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "W2S_STRICT_PLUGINS", "W2S_EXAMPLE_RUN_LOG", "PYTEST_ADDOPTS")}
    # nothing is written into the source tree: no .pytest_cache, no __pycache__
    env.update({"PYTHONPATH": str(example_site), "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1"})
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(EXAMPLE / "tests"), "-q", "-p", "no:cacheprovider"],
        check=False, capture_output=True, text=True, env=env, cwd=EXAMPLE, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout and " skipped" not in proc.stdout
