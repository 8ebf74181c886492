"""Recipes are a data catalogue with one code fingerprint per recipe: editing one recipe's row or functions
changes that dataset's stage identity and no other's; editing the shared loader changes them all.

The source edits are real edits of a copy of the recipes module (with the three modules it imports) in a temporary
package, hashed by the same :class:`CodeHasher` the planner uses.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import shutil
import sys
from pathlib import Path

import pytest
from w2s_harness.plugins.datasets import recipes as R

from w2s_harness import create_plugin_manager
from w2s_harness._engine.codehash import CodeHasher, catalogue_names
from w2s_harness._plan.identity import Identities

SOURCES = Path(R.__file__).parent


@pytest.fixture
def copy(tmp_path, monkeypatch):
    """An importable copy ``recipes_copy_<n>`` of recipes.py, hfsource.py, hubtables.py and prompts.py."""
    name = f"recipes_copy_{abs(hash(str(tmp_path))) % 10**8}"
    pkg = tmp_path / "site" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for f in ("recipes.py", "hfsource.py", "hubtables.py", "prompts.py"):
        shutil.copy(SOURCES / f, pkg / f)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield pkg, name
    for mod in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[mod]


def digests(name: str) -> dict[str, dict[str, str]]:
    module = importlib.import_module(f"{name}.recipes")
    hasher = CodeHasher()
    return {recipe: hasher.component(module.RECIPE_CLASSES[recipe]) for recipe in ("piqa", "boolq", "sciq", "quartz")}


def edit_and_reload(pkg: Path, name: str, old: str, new: str) -> dict[str, dict[str, str]]:
    path = pkg / "recipes.py"
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    for mod in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[mod]
    return digests(name)


def changed(before, after) -> set[str]:
    return {recipe for recipe in before if before[recipe] != after[recipe]}


def test_editing_one_recipes_function_changes_only_its_identity(copy):
    pkg, name = copy
    before = digests(name)
    after = edit_and_reload(pkg, name, 'return f"Q: {row[\'goal\']} A: {correct if label else wrong}"',
                            'return f"Q: {row[\'goal\']}\\nA: {correct if label else wrong}"')
    assert changed(before, after) == {"piqa"}
    assert after["piqa"][f"{name}.recipes"] == before["piqa"][f"{name}.recipes"]  # the loader's code: the same
    assert after["piqa"]["recipe:piqa"] != before["piqa"]["recipe:piqa"]


def test_editing_a_helper_changes_the_recipes_that_call_it(copy):
    pkg, name = copy
    before = digests(name)
    after = edit_and_reload(pkg, name, "return int(rng.random() < 0.5)", "return int(rng.random() <= 0.5)")
    assert changed(before, after) == {"piqa", "sciq", "quartz"}  # _coin: not boolq (no coin)


def test_editing_a_recipes_row_changes_only_its_identity(copy):
    pkg, name = copy
    before = digests(name)
    after = edit_and_reload(pkg, name, 'summary="PIQA: \'Q: {goal} A: {solution}\', the right or the wrong solution")',
                            'summary="PIQA, the right or the wrong solution")')
    assert changed(before, after) == {"piqa"}


def test_editing_the_loader_changes_every_recipe(copy):
    pkg, name = copy
    before = digests(name)
    after = edit_and_reload(pkg, name, "ELEUTHER_HALVES_SEED = 42", "ELEUTHER_HALVES_SEED = 43")
    assert changed(before, after) == set(before)


def test_the_catalogue_is_what_only_the_recipes_use():
    names = catalogue_names(ast.parse((SOURCES / "recipes.py").read_text()), "RECIPES")
    assert {"RECIPES", "_render_piqa", "_pick_piqa", "_coin", "_ethics", "COSMOS_NONE"} <= names
    assert not names & {"Recipe", "RecipeDataset", "shuffled", "train_test_split", "recipe_class", "OPENAI"}
    assert catalogue_names(ast.parse("def f(): pass\n"), "RECIPES") == frozenset()


def test_a_replaced_row_changes_the_stage_identity_of_that_dataset_only(monkeypatch):
    pm = create_plugin_manager()

    def code(name):
        return Identities(pm, content=False).dataset(name, {}, None)["code"]

    before = {n: code(n) for n in ("piqa", "boolq")}
    cls = R.RECIPE_CLASSES["piqa"]

    def render_upper(row, label, extra):
        return R.RECIPES["piqa"].render(row, label, extra).upper()

    monkeypatch.setattr(cls, "recipe", dataclasses.replace(cls.recipe, render=render_upper))
    after = {n: code(n) for n in ("piqa", "boolq")}
    assert after["boolq"] == before["boolq"] and after["piqa"] != before["piqa"]
