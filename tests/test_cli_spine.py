"""The CLI spine: in-process ``main(argv, plugins=[...])``, torch-free ``list``/``--help``/``plugins``,
``validate`` on a TOML config, user errors as one line + exit 2, and packaging of plugins/ and kernels/."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from w2s_harness import __version__, hookimpl
from w2s_harness._cli.cli import main
from w2s_harness._contracts.components import TextData
from w2s_harness._data.datasets import BaseDataset, fingerprint_examples

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SRC = REPO / "examples" / "w2s-harness-example-plugin" / "src"
HEAVY = ("torch", "transformers", "triton", "chess")


# ----------------------------------------------------------------------------- an in-process plugin


class TinyData(BaseDataset):
    name = "t-data"

    def __init__(self, n: int = 40, *, n_train=None, n_test=None, test_seed: int = 0):
        super().__init__(n_train=n_train, n_test=n_test, test_seed=test_seed)
        self.n = n

    def _load(self) -> TextData:
        texts = [f"item {i}" for i in range(self.n)]
        labels = np.arange(self.n) % 2
        return TextData(texts, labels, ["a", "b"], fingerprint_examples(texts, labels, ["a", "b"]))


class LossA:
    def __init__(self, temperature: float = 1.0):
        pass


class LossB:
    def __init__(self, aux_coef: float = 0.5):
        pass


class TinyModel:
    """A fine-tune model these tests only plan with (identity feeds stage ids); nothing here trains it."""

    def __init__(self, width: int = 1):
        self.name, self.width = "t-model", width

    def identity(self):
        return {"width": self.width}

    def classifier(self, n_classes, device):
        raise AssertionError("the CLI spine tests plan and validate only")


class SpinePlugin:
    """Registers one of each component and uses the CLI hooks."""

    def __init__(self):
        self.configured = []

    @hookimpl
    def w2s_register_datasets(self, registry):
        registry.add("t-data", TinyData, description="tiny in-process dataset")

    @hookimpl
    def w2s_register_models(self, registry):
        registry.add("t-weak", TinyModel, description="tiny weak model")
        registry.add("t-strong", lambda width=2: TinyModel(width), description="tiny strong model")

    @hookimpl
    def w2s_register_losses(self, registry):
        registry.add("t-a", LossA, description="loss without aux_coef")
        registry.add("t-b", LossB, description="loss with aux_coef")

    @hookimpl
    def w2s_add_options(self, parser):
        parser.add_argument("--spine-flag", default="off")

    @hookimpl
    def w2s_configure(self, config):
        self.configured.append(config)


CONFIG = """
[dataset]
name = "t-data"
n = 40

[weak]
name = "t-weak"

[strong]
name = "t-strong"
width = 4

[[loss]]
name = "t-a"

[[loss]]
name = "t-b"

[strategy]
name = "naive"

[run]
seeds = [0, 1]
output_dir = "{out}"
"""


@pytest.fixture
def config_file(tmp_path):
    p = tmp_path / "run.toml"
    p.write_text(CONFIG.format(out=(tmp_path / "out").as_posix()), encoding="utf-8")
    return p


@pytest.fixture(autouse=True)
def _wide_plain_output(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps at the terminal width; keep one component per line
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("W2S_STRICT_PLUGINS", raising=False)


def run_main(capsys, argv, plugins=()):
    rc = main(argv, plugins=plugins)
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------------------------------- in-process


def test_main_registers_in_process_plugins(capsys):
    rc, out, err = run_main(capsys, ["list", "losses"], plugins=[SpinePlugin()])
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "losses"
    [line] = [x for x in lines if x.split()[:1] == ["t-b"]]
    assert re.fullmatch(r"  t-b\s+loss with aux_coef  \(SpinePlugin\)", line)
    assert "datasets" not in lines and "t-data" not in out


def test_list_all_kinds_in_order(capsys):
    rc, out, _ = run_main(capsys, ["list"], plugins=[SpinePlugin()])
    assert rc == 0
    headers = [x for x in out.splitlines() if not x.startswith(" ")]
    assert headers == ["datasets", "models", "losses", "strategies", "ops", "executors"]
    assert "  naive " in out and "(builtin:strategies)" in out


def test_plugins_command_in_process(capsys):
    rc, out, _ = run_main(capsys, ["plugins"], plugins=[SpinePlugin()])
    assert rc == 0
    assert ("SpinePlugin  (in-process)   datasets: t-data; models: t-strong, t-weak; losses: t-a, t-b; hooks: w2s_add_options, w2s_configure"
            in out.splitlines())
    assert any(x.startswith(f"builtin:datasets  w2s-harness {__version__}  datasets: ") for x in out.splitlines())


def test_validate_toml_config(capsys, config_file):
    plugin = SpinePlugin()
    rc, out, err = run_main(capsys, ["validate", "--config", str(config_file)], plugins=[plugin])
    assert rc == 0, err
    # naive protocol per seed: weak, weak labels, ceiling, one transfer per loss
    assert out.strip() == "config OK: 10 stages over 2 seeds; experiments: naive/t-a, naive/t-b"
    [config] = plugin.configured  # w2s_configure saw the resolved config
    assert config.strong.params == {"width": 4} and config.run.seeds == [0, 1]


def test_validate_flags_override_the_file(capsys, config_file):
    rc, out, err = run_main(capsys, ["validate", "-c", str(config_file), "--seeds", "3", "--loss", "t-b",
                                     "--set", "loss.aux_coef=0.3", "--set", "dataset.n=20"],
                            plugins=[SpinePlugin()])
    assert rc == 0, err
    assert out.strip() == "config OK: 4 stages over 1 seeds; experiments: naive/t-b(aux_coef=0.3)"


def test_set_loss_param_goes_only_to_losses_accepting_it(capsys, config_file):
    rc, out, err = run_main(capsys, ["validate", "-c", str(config_file), "--set", "loss.aux_coef=0.3"],
                            plugins=[SpinePlugin()])
    assert rc == 0, err
    assert out.strip().endswith("experiments: naive/t-a, naive/t-b(aux_coef=0.3)")


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "naiv"], "error: unknown strategy 'naiv'. Did you mean: naive"),
    (["--weak", "t-waek"], "error: unknown model 't-waek'. Did you mean: t-weak? Available: "),
    (["--loss", "t-a,t-bb"], "error: unknown loss 't-bb'. Did you mean: t-b"),
    (["--set", "dataset.size=3"], ("error: dataset 't-data' has no parameter 'size'. Valid parameters: "
                                   "n, n_test, n_train, test_seed")),
    (["--set", "strong.widht=3"], ("error: model 't-strong' has no parameter 'widht'. Did you mean: width? "
                                   "Valid parameters: width")),
    (["--set", "run.sedes=[1]"], "error: unknown key run.sedes. Did you mean: seeds"),
    (["--set", "loss.aux=1"], "error: --set loss.aux: none of the losses (t-a, t-b) has a parameter 'aux'"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, config_file, argv, message):
    for command in (["validate"], ["run", "--dry-run"]):
        rc, _, err = run_main(capsys, [*command, "-c", str(config_file), *argv], plugins=[SpinePlugin()])
        assert rc == 2
        assert len(err.splitlines()) == 1 and err.startswith(message), err
        assert "Traceback" not in err


def test_unknown_section_in_config_file(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[strateg]\nname = "naive"\n')
    rc, _, err = run_main(capsys, ["validate", "--config", str(bad)])
    assert rc == 2
    assert err.startswith(f"error: unknown section [strateg] in {bad}. Did you mean: strategy")
    assert err.rstrip().endswith("Valid sections: dataset, weak, strong, loss, strategy, run")


def test_missing_config_file_and_report_dir(capsys, tmp_path):
    rc, _, err = run_main(capsys, ["validate", "--config", str(tmp_path / "nope.toml")])
    assert rc == 2 and "does not exist; pass an existing TOML file to --config" in err
    rc, _, err = run_main(capsys, ["report", str(tmp_path)])
    assert rc == 2 and err.startswith(f"error: no results.json at {str(tmp_path / 'results.json')!r}")


def test_dry_run_uses_plugin_options_and_runs_nothing(capsys, config_file, tmp_path):
    plugin = SpinePlugin()
    rc, _, err = run_main(capsys, ["run", "--dry-run", "-c", str(config_file), "--seeds", "0",
                                     "--spine-flag", "on"], plugins=[plugin])
    assert rc == 0, err
    assert err.splitlines()[-1].startswith("5 stages: 0 cached, 5 new, 0 changed (dry run: nothing executed")
    assert sum(" seed=0 " in x for x in err.splitlines()) == 5
    assert plugin.configured[0].extra["spine_flag"] == "on"
    assert not (tmp_path / "out").exists()


def test_argparse_usage_errors_exit_2(capsys):
    assert main(["list", "gadgets"]) == 2
    assert "invalid choice: 'gadgets'" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    capsys.readouterr()


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("run", "list", "plugins", "validate", "report"):
        assert cmd in out
    assert "--strict-plugins" in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"w2s-harness {__version__}"
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--set", "--strategy", "--dataset", "--weak", "--strong", "--loss", "--seeds",
                 "--output-dir", "--resume", "--dry-run", "--json"):
        assert flag in out


# --------------------------------------------------------------------------------- import lightness


LIGHT_COMMANDS = [["--help"], ["list"], ["list", "models"], ["plugins"]]


def test_cli_does_not_import_torch():
    """``--help``, ``list`` and ``plugins`` (also with the example plugin loaded) leave torch & co. unimported."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "W2S_STRICT_PLUGINS")}
    env["PYTHONPATH"] = str(EXAMPLE_SRC)
    script = ("import io, contextlib, json, sys\n"
              "from w2s_harness._cli.cli import main\n"
              "out = []\n"
              f"for argv in {LIGHT_COMMANDS!r}:\n"
              "    for plugins in ([], ['w2s_example_plugin']):\n"
              "        with contextlib.redirect_stdout(io.StringIO()):\n"
              "            rc = main(argv, plugins=plugins)\n"
              f"        out.append([argv, plugins, rc, [m for m in {list(HEAVY)!r} if m in sys.modules]])\n"
              "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    assert len(results) == 2 * len(LIGHT_COMMANDS)
    for argv, plugins, rc, loaded in results:
        assert (rc, loaded) == (0, []), f"main({argv}, plugins={plugins}) imported {loaded}"


# ------------------------------------------------------------------------------------------ packaging


def _origin(modname: str) -> Path:
    spec = importlib.util.find_spec(modname)  # locates without executing the module itself
    assert spec is not None and spec.origin, modname
    return Path(spec.origin).resolve()


def test_plugins_and_kernels_ship_inside_the_package():
    """``w2s_harness.plugins``/``.kernels`` come from the top-level plugins/ and kernels/ folders (editable
    install), or sit inside the installed ``w2s_harness`` package (regular install, e.g. under tox)."""
    core = _origin("w2s_harness").parent
    plugins = _origin("w2s_harness.plugins").parent
    kernels = _origin("w2s_harness.kernels").parent
    assert _origin("w2s_harness.plugins.strategies") == plugins / "strategies" / "__init__.py"
    assert _origin("w2s_harness.kernels.dispatch") == kernels / "dispatch.py"
    if core == (REPO / "src" / "w2s_harness").resolve():  # pip install -e .
        assert plugins == (REPO / "plugins" / "builtin").resolve()
        assert kernels == (REPO / "kernels" / "fused").resolve()
    else:  # pip install .
        assert (plugins, kernels) == (core / "plugins", core / "kernels")


def _copy_project(dest: Path) -> Path:
    """The files a build needs, without build outputs or environments (so concurrent builds cannot race)."""
    skip = shutil.ignore_patterns(".git", ".venv", ".tox", "build", "dist", "runs", "*.egg-info", "__pycache__",
                                  ".pytest_cache", ".ruff_cache", ".benchmarks", "examples", "tests", "benchmarks")
    shutil.copytree(REPO, dest, ignore=skip)
    return dest


@pytest.mark.slow
def test_wheel_install_imports_plugins_and_kernels(tmp_path):
    """``pip install .``: build a wheel of the project, install it with --target, import from it."""
    pytest.importorskip("setuptools")
    src = _copy_project(tmp_path / "project")
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    proc = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(wheels),
                           str(src)], check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [wheel] = wheels.glob("w2s_harness-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    core = REPO / "src"
    every_core_module = [p.relative_to(core).as_posix() for p in core.rglob("*.py")]  # the subpackages too
    for member in (*every_core_module, "w2s_harness/default.toml", "w2s_harness/plugins/__init__.py",
                   "w2s_harness/plugins/strategies/naive.py", "w2s_harness/kernels/dispatch.py"):
        assert member in names
    assert not any(n.startswith(("plugins/", "kernels/", "tests/")) for n in names)  # no top-level leaks
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "w2s-harness = w2s_harness._cli.cli:console_main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    proc = subprocess.run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
                          check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(site),
           "COLUMNS": "250"}
    script = ("import json, w2s_harness, w2s_harness.plugins.strategies, w2s_harness.kernels.dispatch as d\n"
              "print(json.dumps([w2s_harness.__file__, w2s_harness.plugins.strategies.__file__, d.__file__]))")
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for f in json.loads(proc.stdout):
        assert Path(f).resolve().is_relative_to(site.resolve()), f
    proc = subprocess.run([sys.executable, "-m", "w2s_harness", "list", "strategies"], check=False, capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and "naive" in proc.stdout and "(builtin:strategies)" in proc.stdout
