"""The repository root shadows no installed package.

Python puts the working directory (or the script's folder) first on ``sys.path``: ``python -m pytest`` and
``python -c`` from the checkout, a notebook started there, a Ray worker whose head was started there. A root-level
folder with an ``__init__.py`` is then a *regular* package that wins over any installed package of the same name.
That happened with ``kernels/``: transformers >= 5 imports Hugging Face's ``kernels`` package, found the project's
folder instead and failed on every ``hf:`` model load. The sources of ``w2s_harness.kernels`` and
``w2s_harness.plugins`` therefore live one level down (``kernels/fused/``, ``plugins/builtin/``); the top-level
folders have no ``__init__.py``, so at most they are namespace-package portions, which Python uses only when no
regular package of that name is installed.

Each test runs a fresh interpreter with the repository root as the working directory *and* first on ``sys.path``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: top-level folders whose names are (or could be) the names of installed packages
ROOT_FOLDERS = ("kernels", "plugins")


def _python_in_root(code: str, extra_path: Path | None = None, timeout: float = 300) -> str:
    """Run ``code`` in a new interpreter from the repository root with the root first on ``sys.path``;
    ``extra_path`` (a stand-in site-packages) goes after it, as an installed package's folder would."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    prologue = f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
    proc = subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("name", ROOT_FOLDERS)
def test_root_folder_is_no_regular_package(name):
    """No ``__init__.py`` at the top-level folder: it can never be a regular package that hides another."""
    assert (REPO / name).is_dir()
    assert not (REPO / name / "__init__.py").exists(), f"{name}/__init__.py makes the root shadow '{name}'"


@pytest.mark.parametrize("name", ROOT_FOLDERS)
def test_an_installed_package_of_the_same_name_wins_over_the_root(name, tmp_path):
    """A package named like a root folder, installed on a path *after* the root, is the one ``import`` finds."""
    site = tmp_path / "site"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text("WHO = 'installed'\n")
    out = _python_in_root(f"import {name}; print({name}.WHO, {name}.__file__)", extra_path=site)
    who, file = out.split(" ", 1)
    assert who == "installed" and Path(file).resolve() == (site / name / "__init__.py").resolve()


def test_import_kernels_from_the_root_is_hugging_faces_package():
    """With Hugging Face's ``kernels`` installed (transformers >= 5 requires it), ``import kernels`` from the
    checkout imports that distribution's package; without it, nothing of the project's is executed."""
    out = json.loads(_python_in_root("""
        import json, kernels
        print(json.dumps({"file": getattr(kernels, "__file__", None), "path": list(getattr(kernels, "__path__", []))}))
    """))
    try:
        dist = importlib.metadata.distribution("kernels")
    except importlib.metadata.PackageNotFoundError:
        assert out["file"] is None  # a namespace portion at most: no module of the project's ran
        return
    installed = Path(dist.locate_file("kernels")).resolve()
    assert Path(out["file"]).resolve().parent == installed, out
    assert (REPO / "kernels").resolve() not in Path(out["file"]).resolve().parents


def test_hf_model_loads_with_the_root_first_on_sys_path(tmp_path):
    """An ``hf:`` model (a tiny BERT written here) loads and embeds from the checkout root: transformers' own
    import of ``kernels`` is not captured by the project's folder."""
    pytest.importorskip("transformers")
    out = _python_in_root(f"""
        import os
        os.environ["HF_HUB_OFFLINE"] = "1"
        import torch
        from transformers import BertConfig, BertModel, BertTokenizerFast
        d = {str(tmp_path / "tiny")!r}
        os.makedirs(d)
        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie"]
        open(os.path.join(d, "vocab.txt"), "w").write("\\n".join(words) + "\\n")
        BertTokenizerFast.from_pretrained(d).save_pretrained(d)
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, max_position_embeddings=16)).save_pretrained(d)
        from w2s_harness._plugin_system.registry import Registry
        from w2s_harness.plugins import models
        reg = Registry("model")
        models.w2s_register_models(reg)
        x = next(iter(reg.create("hf:" + d).features(["good movie", "bad movie"], device="cpu").values()))
        import kernels, w2s_harness.kernels
        print(x.shape[0], x.shape[1], getattr(kernels, "__file__", None) or "namespace",
              w2s_harness.kernels.__file__)
    """)
    rows, dim, kernels_file, ours = out.splitlines()[-1].split(" ")
    assert (int(rows), int(dim)) == (2, 16)
    assert kernels_file == "namespace" or (REPO / "kernels").resolve() not in Path(kernels_file).resolve().parents
    assert Path(ours).resolve().parent.name in ("fused", "kernels")  # editable install / wheel


def test_every_package_folder_is_listed_for_the_wheel():
    """``[tool.setuptools] packages`` is a list: a subpackage missing from it is silently left out of a wheel
    (``pip install .``) while an editable install still finds it. Every folder with an ``__init__.py`` under a
    ``package-dir`` root must be listed."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    setup = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = set()
    for name, folder in setup["package-dir"].items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            if "__pycache__" not in rel:
                found.add(".".join((name, *rel)))
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"
