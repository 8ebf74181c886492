"""The documentation cannot rot: README/CI commands, TOML examples, the CLI reference and the strict site build.

* the README's two commands come first, and the second one is exactly what ``.ci/run`` runs;
* every ```toml block in ``docs/`` and ``README.md`` parses, and passes ``w2s-harness validate`` unless it is
  marked ``<!-- not-a-config -->`` (a fragment such as a ``pyproject.toml`` snippet);
* ``docs/guide/cli.md`` names every flag the parser has, and no flag it does not have;
* the complete plugin examples of ``docs/plugins/`` (Python blocks marked ``<!-- plugin-example -->``) load,
  register their components and run a small experiment together;
* ``mkdocs build --strict`` passes (broken links and anchors, pages missing from the nav, griffe warnings), and
  the API reference documents every name of ``w2s_harness.__all__``.
"""

from __future__ import annotations

import csv
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from functools import cache
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CLI_PAGE = DOCS / "guide" / "cli.md"
NOT_A_CONFIG = "<!-- not-a-config -->"
PLUGIN_EXAMPLE = "<!-- plugin-example -->"
FLAG_RE = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _main():
    """The in-process CLI entry point, wherever the package currently exports it."""
    import w2s_harness

    if callable(getattr(w2s_harness, "main", None)):
        return w2s_harness.main
    for module in ("w2s_harness._cli.cli", "w2s_harness.cli"):
        try:
            return importlib.import_module(module).main
        except ImportError:
            continue
    raise ImportError("no in-process CLI entry point: w2s_harness.main, w2s_harness._cli.cli.main or w2s_harness.cli.main")


def _fences(text: str):
    """``(info, first_line_number, body, preceding_text)`` for every fenced code block of a Markdown text."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.groups()
        start = i
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i].removeprefix(indent))
            i += 1
        i += 1
        before = "\n".join(lines[max(0, start - 3):start])
        yield info, start + 1, "\n".join(body) + "\n", before


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


# ------------------------------------------------------------------------------------ README and CI command


def _readme_commands() -> list[str]:
    for info, _, body, _ in _fences(README.read_text(encoding="utf-8")):
        if info == "bash":
            return [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]
    raise AssertionError("README.md has no ```bash block")


def _ci_command() -> str:
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    commands = [ln for ln in lines if ln.startswith("python3 -m venv")]
    assert len(commands) == 1, f".ci/run should hold exactly one setup+test command line, found {commands}"
    return commands[0]


def test_readme_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    first_fence = text.index("```")
    assert text.index("```bash") == first_fence, "the README's first code block must be the two commands"
    assert len(text[:first_fence].splitlines()) <= 5, "the two commands must come first in the README"
    commands = _readme_commands()
    assert len(commands) == 2, commands
    run, test = commands
    assert run.endswith(".venv/bin/w2s-harness run"), run
    assert "pytest" in test and "mkdocs build --strict" in test, test
    assert "[dev,kernels,docs]" in test, "the test command must install the docs extra"
    mkdocs = next(part for part in test.split("&&") if "mkdocs build" in part).split()
    assert "-q" not in mkdocs and "--quiet" not in mkdocs, "mkdocs -q hides the warnings that --strict turns into errors"


def test_ci_runs_exactly_the_readme_test_command():
    assert _readme_commands()[1] == _ci_command()


def test_install_page_repeats_the_readme_commands():
    page = (DOCS / "guide" / "install.md").read_text(encoding="utf-8")
    blocks = [body for info, _, body, _ in _fences(page) if info == "bash"]
    commands = [ln.strip() for ln in blocks[0].splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert commands == _readme_commands()


def test_readme_relative_links_exist():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link.split("#", 1)[0] for link in links if not re.match(r"^[a-z]+:", link) and not link.startswith("#")]
    assert local, "the README should link to the docs pages"
    missing = [link for link in local if link and not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_docs_do_not_reference_files_outside_the_repo():
    for path in _markdown_files():
        text = path.read_text(encoding="utf-8")
        for needle in ("../shared/", "W2S_REFERENCE.md", "OFFLINE_ASSETS.md"):
            assert needle not in text, f"{path.relative_to(ROOT)} mentions {needle}"


# ---------------------------------------------------------------------------------------- plugin examples


def _plugin_example_blocks() -> list[tuple[str, str]]:
    """``(page stem, code)`` of every complete plugin example in ``docs/plugins/``."""
    blocks = []
    for path in sorted((DOCS / "plugins").glob("*.md")):
        examples = [body for info, _, body, before in _fences(path.read_text(encoding="utf-8"))
                    if info == "python" and PLUGIN_EXAMPLE in before]
        # a page's second example is its own module (``datasets_2``): each block is a separate plugin
        blocks += [(path.stem if i == 0 else f"{path.stem}_{i + 1}", body) for i, body in enumerate(examples)]
    return blocks


@cache
def _doc_plugins() -> tuple[types.ModuleType, ...]:
    """The plugin examples of the docs, each executed as a module (what ``pip install`` of it would give)."""
    modules = []
    for stem, code in _plugin_example_blocks():
        module = types.ModuleType(f"w2s_docs_example_{stem}")
        module.__file__ = str(DOCS / "plugins" / f"{stem}.md")
        sys.modules[module.__name__] = module  # dataclasses and pickling look classes up by module
        exec(compile(code, module.__file__, "exec"), module.__dict__)  # noqa: S102 - the docs' own example code
        modules.append(module)
    return tuple(modules)


def test_every_plugin_page_has_a_complete_example():
    stems = {stem for stem, _ in _plugin_example_blocks()}
    assert {"datasets", "datasets_2", "models", "losses", "strategies", "observers"} <= stems, stems


def test_plugin_examples_register_their_components(capsys):
    rc = _main()(["plugins"], plugins=list(_doc_plugins()))
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in ("arith-check", "arith-pick", "hashed-bow", "hashed-bag", "smoothed-xent", "focal",
                 "co-supervised", "w2s_configure"):
        assert name in out, f"`w2s-harness plugins` with the docs' examples does not list {name}:\n{out}"


#: The docs' two example models, small, as the runs below use them.
DOC_MODELS = """
[weak]
name = "hashed-bow"
dim = 64
epochs = 3

[strong]
name = "hashed-bag"
width = 16
epochs = 2
"""


def test_plugin_examples_run_together(tmp_path, capsys):
    """A small real run that uses every example: dataset, both models, both losses, the strategy, the observer."""
    config = tmp_path / "run.toml"
    config.write_text(f"""
[dataset]
name = "arith-check"
n = 240
{DOC_MODELS}
[[loss]]
name = "xent"

[[loss]]
name = "smoothed-xent"
smoothing = 0.1

[[loss]]
name = "focal"

[strategy]
name = "co-supervised"
partner = {{ name = "hashed-bow", dim = 256 }}

[run]
seeds = [0, 1]
device = "cpu"
workers = 1
output_dir = "{(tmp_path / "out").as_posix()}"
""", encoding="utf-8")
    log = tmp_path / "stages.csv"
    rc = _main()(["run", "--config", str(config), "--csv-log", str(log)], plugins=list(_doc_plugins()))
    err = capsys.readouterr().err
    assert rc == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert results["status"] == "complete"
    rows = {e["name"] for e in results["experiments"]}
    assert {"naive/xent", "co-supervised/xent", "co-supervised/smoothed-xent(smoothing=0.1)", "co-supervised/focal"} <= rows
    assert {(c["a"], c["b"]) for c in results["comparisons"]} >= {("co-supervised/focal", "naive/focal")}
    assert results["config"]["extra"].get("csv_log") == str(log)
    with log.open(encoding="utf-8") as fh:
        logged = list(csv.DictReader(fh))
    assert len(logged) == len(results["stages"])
    assert "csv_log:" in err and "stages logged" in err


def test_the_choice_dataset_example_runs_as_a_choice_task(tmp_path, capsys):
    """The docs' ChoiceDataset example: its rows are shuffled n-way choices whose label is the true sum's position,
    and a real run on it (the docs' feature models, naive transfer) finishes with every train stage measured."""
    import numpy as np

    import w2s_harness

    pm = w2s_harness.create_plugin_manager(plugins=list(_doc_plugins()))
    data = pm.create("dataset", "arith-pick", n=300, n_candidates=4).load()
    assert isinstance(data, w2s_harness.ChoiceData) and data.n_candidates == 4 and len(data.texts) == 300
    for prompt, pair, label in zip(data.texts, data.pairs, data.labels):
        a, b = (int(x) for x in prompt.removesuffix(" = ?").split(" + "))
        sums = [int(p.rsplit("\n", 1)[1]) for p in pair]  # the default pair template: prompt, newline, candidate
        assert sums[label] == a + b and len(set(sums)) == 4
    assert len(set(np.asarray(data.labels).tolist())) == 4  # the true answer's position is shuffled

    config = tmp_path / "run.toml"
    config.write_text(f"""
[dataset]
name = "arith-pick"
n = 240
{DOC_MODELS}
[strategy]
name = "naive"

[run]
seeds = [0]
device = "cpu"
workers = 1
output_dir = "{(tmp_path / "out").as_posix()}"
""", encoding="utf-8")
    rc = _main()(["run", "--config", str(config)], plugins=list(_doc_plugins()))
    assert rc == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert results["status"] == "complete"
    train = [s for s in results["stages"] if s["op"] == "train"]
    assert train and all(0.0 <= s["metrics"]["test_acc"] <= 1.0 for s in train)


# ------------------------------------------------------------------------------------------- TOML examples


def _toml_blocks():
    for path in _markdown_files():
        for info, line, body, before in _fences(path.read_text(encoding="utf-8")):
            if info == "toml":
                rel = path.relative_to(ROOT).as_posix()
                yield pytest.param(body, NOT_A_CONFIG in before, rel.startswith("docs/plugins/"), id=f"{rel}:{line}")


def _write_local_data(config: dict, cwd: Path) -> None:
    """Create the small data file a ``local`` dataset example points at (validate loads the dataset)."""
    ds = config.get("dataset")
    if not isinstance(ds, dict) or ds.get("name") != "local" or "path" not in ds:
        return
    template = ds.get("template")
    columns = ds.get("text_columns")
    if isinstance(columns, str):
        columns = [columns]
    if not columns:
        columns = re.findall(r"\{(\w+)", template) if template else ["text"]
    label = ds.get("label_column", "label")
    rows = [{**{c: f"{c} of example {i}" for c in columns}, label: ("yes", "no")[i % 2]} for i in range(200)]
    prompt = ds.get("prompt_column", "prompt")
    if ds.get("chosen_column"):  # a preference file (docs/choice.md)
        rows = [{prompt: f"prompt {i}", ds["chosen_column"]: f"good reply {i}",
                 ds["rejected_column"]: f"bad reply {i}"} for i in range(200)]
    elif ds.get("candidates_column"):  # a multiple-choice file
        rows = [{prompt: f"question {i}", ds["candidates_column"]: [f"option {j} of {i}" for j in range(3)],
                 ds["answer_column"]: i % 3} for i in range(200)]
    if ds.get("difficulty_column"):  # an easy-to-hard example: difficulties 0..199
        rows = [{**r, ds["difficulty_column"]: i} for i, r in enumerate(rows)]
    path = cwd / ds["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t" if suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif suffix in (".json", ".jsonl", ".ndjson"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:  # pragma: no cover - a docs example with another format needs a writer here
        raise AssertionError(f"tests/test_docs.py cannot create a {suffix} file for {ds['path']!r}")


@pytest.mark.parametrize(("body", "fragment", "needs_doc_plugins"), list(_toml_blocks()))
def test_toml_example_is_a_valid_config(body, fragment, needs_doc_plugins, tmp_path, monkeypatch, capsys):
    """Examples on the plugin pages name the components of those pages' examples, which are loaded for them."""
    config = tomllib.loads(body)  # every block must at least parse
    if fragment:
        return
    monkeypatch.chdir(tmp_path)
    _write_local_data(config, tmp_path)
    path = tmp_path / "example.toml"
    path.write_text(body, encoding="utf-8")
    plugins = list(_doc_plugins()) if needs_doc_plugins else []
    # an example whose data is a local file is validated with its content; one that names hub data or weights
    # (unreachable here) is checked offline: names, parameters and the stage graph
    local = isinstance(config.get("dataset"), dict) and config["dataset"].get("name") in ("local", "tweets-sentiment", None)
    rc = _main()(["validate", "--config", str(path), *([] if local else ["--offline"])], plugins=plugins)
    out = capsys.readouterr()
    assert rc == 0, f"w2s-harness validate failed for this example:\n{body}\n{out.out}{out.err}"
    assert "config OK" in out.out


def test_config_page_shows_the_packaged_defaults():
    import w2s_harness

    page = (DOCS / "guide" / "config.md").read_text(encoding="utf-8")
    shown = [body for info, _, body, before in _fences(page) if info == "toml" and "<!-- default-config -->" in before]
    assert len(shown) == 1, "docs/guide/config.md should show the defaults once, marked <!-- default-config -->"
    defaults = {k: v for k, v in w2s_harness.RunConfig.default().to_dict().items() if k != "extra"}
    assert tomllib.loads(shown[0]) == defaults, "the defaults shown in docs/guide/config.md are out of date"


def test_toml_blocks_were_found():
    blocks = list(_toml_blocks())
    assert len(blocks) >= 5
    assert any(not p.values[1] for p in blocks), "at least one whole config is validated"


# ----------------------------------------------------------------------------------------- CLI reference


def _help(argv: list[str], capsys) -> str:
    capsys.readouterr()
    rc = _main()(argv)
    out = capsys.readouterr()
    assert rc == 0, f"{argv} exited with {rc}: {out.err}"
    return out.out


def _subcommands(top_help: str) -> list[str]:
    lines = top_help.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "COMMAND")
    commands = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        m = re.match(r"^ {4}([a-z][\w-]*)(\s|$)", line)
        if m:
            commands.append(m.group(1))
    return commands


@pytest.fixture
def help_texts(monkeypatch, capsys) -> dict[str, str]:
    """``--help`` of the top-level parser and of every subcommand, with only the built-in plugins loaded (flags
    that an installed third-party plugin adds through ``w2s_add_options`` are that plugin's to document)."""
    real = importlib.metadata.entry_points

    def no_w2s_plugins(**kwargs):
        if kwargs.get("group") == "w2s_harness":
            return importlib.metadata.EntryPoints(())
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", no_w2s_plugins)
    monkeypatch.setenv("COLUMNS", "200")
    texts = {"": _help(["--help"], capsys)}
    for command in _subcommands(texts[""]):
        texts[command] = _help([command, "--help"], capsys)
    return texts


def test_cli_reference_documents_every_flag(help_texts):
    page = CLI_PAGE.read_text(encoding="utf-8")
    commands = [c for c in help_texts if c]
    assert {"run", "list", "plugins", "validate", "report"} <= set(commands), commands
    for command in commands:
        assert f"## `{command}`" in page, f"docs/guide/cli.md has no section for `{command}`"
    documented = set(FLAG_RE.findall(page))
    for command, text in help_texts.items():
        missing = set(FLAG_RE.findall(text)) - documented
        assert not missing, f"`w2s-harness {command} --help` lists {sorted(missing)}, missing from docs/guide/cli.md"


def test_cli_reference_mentions_no_unknown_flag(help_texts):
    known = set().union(*(FLAG_RE.findall(text) for text in help_texts.values()))
    unknown = set(FLAG_RE.findall(CLI_PAGE.read_text(encoding="utf-8"))) - known
    assert not unknown, f"docs/guide/cli.md mentions flags no --help lists: {sorted(unknown)}"


# ---------------------------------------------------------------------------------------------- site build


def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            pytest.skip(f"{module} is not installed: pip install -e '.[docs]' to build the docs")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    import w2s_harness

    missing = [name for name in w2s_harness.__all__ if f'id="w2s_harness.{name}"' not in api]
    assert not missing, f"the API reference does not document {missing}"


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_validate_without_downloading(path, capsys):
    """Every shipped example config checks out offline: names, parameters and the stage graph (the GPU sweeps name
    hub data and weights that this machine cannot download)."""
    assert _main()(["validate", "--offline", "--config", str(path)]) == 0, capsys.readouterr().err
    assert "config OK" in capsys.readouterr().out


def test_the_extension_methods_the_dataset_pages_name_are_in_the_api_reference():
    """A dataset author overrides underscored methods (``_load``, ``_keep_rows``, ``_all_choices``...): each one the
    plugin pages name is a documented method of :class:`BaseDataset` or :class:`ChoiceDataset`, and the API
    reference's member filter lets it through (the filter hides every other private name)."""
    import w2s_harness

    named = set()
    for page in (DOCS / "plugins" / "datasets.md", DOCS / "choice.md"):
        named |= set(re.findall(r"`(_[a-z][a-z_]*)\(", page.read_text()))
    assert {"_load", "_load_rows", "_keep_rows", "_row_difficulty", "_all_choices"} <= named
    api = (DOCS / "reference" / "api.md").read_text()
    hidden = [re.compile(f[1:]) for f in json.loads(re.search(r"filters: (\[.*\])", api).group(1)) if f[0] == "!"]
    for name in sorted(named):
        owner = next((cls for cls in (w2s_harness.BaseDataset, w2s_harness.ChoiceDataset) if name in vars(cls)), None)
        assert owner is not None, f"{name} is named in the docs but is no method of BaseDataset/ChoiceDataset"
        assert (getattr(owner, name).__doc__ or "").strip(), f"{owner.__name__}.{name} has no docstring"
        assert not any(f.search(name) for f in hidden), f"the API reference's filter hides {name}"
    assert any(f.search("_validate") for f in hidden)  # the filter still hides the rest
