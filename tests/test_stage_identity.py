"""Stage identity is content-complete: a change to anything that determines a stage's output reruns exactly the
stages it affects, and nothing else does.

The "outside plugin" here is a real module written to a temporary directory and imported from there, registering a
loss and a helper module it imports; edits are real edits of its source files. Plans are compared stage by stage
(by name and seed); one end-to-end run checks that the store really serves the unchanged stages and recomputes the
changed ones.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
from test_pipeline import write_config

from w2s_harness import create_plugin_manager, load_config, make_plan
from w2s_harness._cli.cli import main
from w2s_harness._engine.codehash import CodeHasher, source_digest

LOSS_MODULE = '''
"""An outside plugin's loss (the docstring is not code)."""
import torch
from w2s_harness import hookimpl
from {pkg}.helpers import clip


class Smooth:
    """Label-smoothed soft cross-entropy."""

    def __init__(self, eps: float = 0.1):
        self.eps = eps

    def __call__(self, logits, targets, step_frac=0.0):
        k = targets.shape[-1]
        t = (1 - self.eps) * targets + self.eps / k
        return -(t * torch.log_softmax(clip(logits), dim=-1)).sum(-1).mean()


@hookimpl
def w2s_register_losses(registry):
    registry.add("smooth", Smooth, description="label-smoothed xent (outside plugin)")
'''

HELPERS = '''
def clip(x):
    return x.clamp(-50, 50)
'''


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """An importable outside plugin package ``outside_pkg_<n>`` with a loss module and a helper it imports."""
    name = f"outside_pkg_{abs(hash(str(tmp_path))) % 10**8}"
    root = tmp_path / "site"
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "losses.py").write_text(LOSS_MODULE.format(pkg=name))
    (pkg / "helpers.py").write_text(HELPERS)
    monkeypatch.syspath_prepend(str(root))
    module = importlib.import_module(f"{name}.losses")
    yield pkg, module
    for mod in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[mod]


def plan_ids(cfg, plugins=()):
    pm = create_plugin_manager(list(plugins))
    return {(s.seed, s.name): s.id for s in make_plan(cfg, pm).stages}


def changed(before: dict, after: dict) -> set[str]:
    assert before.keys() == after.keys()
    return {name for (seed, name), sid in before.items() if after[(seed, name)] != sid}


def config(tmp_path, losses=("xent", "smooth"), extra="", seeds="[0]"):
    block = "".join(f'[[loss]]\nname = "{n}"\n{extra if n == "smooth" else ""}' for n in losses)
    return load_config(write_config(tmp_path, loss_block=block, seeds=seeds))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


TRANSFER_SMOOTH = {"transfer[smooth]"}


def test_editing_an_outside_plugins_loss_reruns_exactly_its_stages(tmp_path, outside):
    pkg, module = outside
    cfg = config(tmp_path)
    before = plan_ids(cfg, [module])
    assert {"weak", "weak labels", "ceiling", "transfer[xent]", "transfer[smooth]"} <= {n for _, n in before}
    edit(pkg / "losses.py", "(1 - self.eps) * targets", "(1.0 - self.eps) * targets * 1.0")
    assert changed(before, plan_ids(cfg, [module])) == TRANSFER_SMOOTH


def test_a_changed_loss_default_reruns_its_stages_and_an_explicit_default_does_not(tmp_path, outside):
    pkg, module = outside
    implicit = plan_ids(config(tmp_path), [module])
    explicit = plan_ids(config(tmp_path, extra="eps = 0.1\n"), [module])
    # writing the default out is the same work: the same stage ids (only the row's display name differs)
    assert set(implicit.values()) == set(explicit.values())
    edit(pkg / "losses.py", "eps: float = 0.1", "eps: float = 0.2")
    assert changed(implicit, plan_ids(config(tmp_path), [module])) == TRANSFER_SMOOTH
    # the explicit 0.1 is now a different value from the new default, but the same work as before... except that
    # the module's code changed too, so it reruns (a code change is never assumed harmless)
    assert changed(explicit, plan_ids(config(tmp_path, extra="eps = 0.1\n"), [module])) == {"transfer[smooth(eps=0.1)]"}


def test_a_builtin_loss_default_is_resolved_from_its_signature(tmp_path, monkeypatch):
    """Changing LogConfLoss's default warmup changes the logconf stages' ids even without a source change: the
    resolved parameters are part of the identity."""
    import inspect

    from w2s_harness.plugins.losses.logconf import LogConfLoss

    cfg = load_config(write_config(tmp_path))  # xent + logconf
    before = plan_ids(cfg)
    explicit = load_config(write_config(tmp_path, loss_block='[[loss]]\nname = "xent"\n[[loss]]\nname = "logconf"\n'
                                                             'warmup = "linear"\n'))
    assert set(plan_ids(explicit).values()) == set(before.values())
    sig = inspect.signature(LogConfLoss.__init__)
    params = [p.replace(default="constant") if p.name == "warmup" else p for p in sig.parameters.values()]
    monkeypatch.setattr(LogConfLoss.__init__, "__signature__", sig.replace(parameters=params), raising=False)
    assert changed(before, plan_ids(cfg)) == {"transfer[logconf]"}


def test_editing_a_helper_module_the_loss_imports_reruns_its_stages(tmp_path, outside):
    pkg, module = outside
    cfg = config(tmp_path)
    before = plan_ids(cfg, [module])
    edit(pkg / "helpers.py", "clamp(-50, 50)", "clamp(-40, 40)")
    assert changed(before, plan_ids(cfg, [module])) == TRANSFER_SMOOTH


def test_docstring_and_comment_edits_change_nothing(tmp_path, outside):
    pkg, module = outside
    cfg = config(tmp_path)
    before = plan_ids(cfg, [module])
    edit(pkg / "losses.py", '"""Label-smoothed soft cross-entropy."""', '"""Smoothed xent.\n\n    More words."""  # hi')
    assert changed(before, plan_ids(cfg, [module])) == set()


def test_a_changed_line_in_the_training_loop_reruns_every_train_stage(tmp_path, monkeypatch):
    """The training loop is engine code: a copy of _training.py with one changed line stands in for the edit."""
    from w2s_harness._engine import training

    cfg = load_config(write_config(tmp_path))
    before = plan_ids(cfg)
    source = Path(training.__file__).read_text()
    copy = tmp_path / "_training.py"
    real_module_file = CodeHasher.module_file

    def module_file(name):
        return str(copy) if name == "w2s_harness._engine.training" else real_module_file(name)

    monkeypatch.setattr(CodeHasher, "module_file", staticmethod(module_file))
    copy.write_text(source + "\n# a comment only\n")
    assert changed(before, plan_ids(cfg)) == set()
    copy.write_text(source + "\nCHANGED = 1\n")
    after = plan_ids(cfg)
    assert changed(before, after) == {n for _, n in before}  # every train stage, and so every label stage too


def test_an_edited_dataset_row_reruns_everything_that_reads_the_data(tmp_path):
    cfg_path = write_config(tmp_path)
    before = plan_ids(load_config(cfg_path))
    csv = tmp_path / "reviews.csv"
    lines = csv.read_text().splitlines()
    lines[5] = lines[5].replace(",", " indeed,", 1)
    csv.write_text("\n".join(lines) + "\n")
    assert changed(before, plan_ids(load_config(cfg_path))) == {n for _, n in before}


def test_source_digest_ignores_docstrings_and_comments_but_not_code():
    a = source_digest('def f(x):\n    """doc"""\n    return x + 1  # c\n')
    assert a == source_digest("def f(x):\n    return x + 1\n")
    assert a != source_digest("def f(x):\n    return x + 2\n")


def test_rerun_after_an_outside_plugin_edit_recomputes_only_the_affected_stages(tmp_path, outside, capsys):
    pkg, module = outside
    cfg = write_config(tmp_path, loss_block='[[loss]]\nname = "xent"\n[[loss]]\nname = "smooth"\n', seeds="[0]")
    args = ["run", "--config", str(cfg), "--workers", "1"]
    assert main(args, plugins=[module]) == 0
    first = json.loads((tmp_path / "out" / "results.json").read_text())
    assert first["timings"]["stages_computed"] == 5
    edit(pkg / "helpers.py", "clamp(-50, 50)", "clamp(-30, 30)")
    capsys.readouterr()
    assert main(["run", "--config", str(cfg), "--dry-run"], plugins=[module]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "transfer[smooth]" in x)
    assert line.startswith("changed")
    assert f"code of the loss changed ({pkg.name}.helpers)" in err
    assert "5 stages: 4 cached, 0 new, 1 changed" in err
    assert main(args, plugins=[module]) == 0
    second = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (second["timings"]["stages_computed"], second["timings"]["stages_cached"]) == (1, 4)


def test_dry_run_names_a_changed_parameter(tmp_path, capsys):
    cfg = write_config(tmp_path, seeds="[0]", loss_block='[loss]\nname = "logconf"\n')
    assert main(["run", "--config", str(cfg), "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["run", "--config", str(cfg), "--dry-run", "--set", "loss.aux_coef=0.25"]) == 0
    err = capsys.readouterr().err
    assert "- loss parameter aux_coef: 0.5 -> 0.25" in err
    assert "4 stages: 3 cached, 0 new, 1 changed" in err


MODEL_MODULE = '''
import zlib
import numpy as np
from w2s_harness import check_train_config, hookimpl, zero_linear_head


class Trigram:
    name = "outside-trigram"

    def __init__(self, dim: int = 32, epochs: int = 3):
        self.dim = dim
        self.train_config = check_train_config("outside-trigram", lr=0.05, epochs=epochs, batch_size=32)

    def feature_key(self):
        return f"outside-trigram|{self.dim}"

    def identity(self):
        return {"dim": self.dim}

    def features(self, texts, progress=None, device=None):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for j in range(len(t) - 2):
                out[i, zlib.crc32(t[j:j + 3].encode()) % self.dim] += 1.0
        return {self.feature_key(): out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)}

    def head(self, n_classes, in_features, device):
        return zero_linear_head(in_features, n_classes, device)


@hookimpl
def w2s_register_models(registry):
    registry.add("outside-trigram", Trigram, description="trigram counts (outside plugin)")
'''


def test_an_edited_feature_model_recomputes_its_features_and_stages(tmp_path, monkeypatch):
    """The feature cache is keyed by the model's feature key, which a plugin author may forget to bump: the
    model's code fingerprint is part of the cache key too, so edited ``features`` code is never served old
    features."""
    name = f"outside_models_{abs(hash(str(tmp_path))) % 10**8}"
    pkg = tmp_path / "site" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(MODEL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    module = importlib.import_module(f"{name}.models")
    try:
        cfg = write_config(tmp_path, seeds="[0]", loss_block='[loss]\nname = "xent"\n')
        args = ["run", "--config", str(cfg), "--workers", "1", "--weak", "outside-trigram"]
        assert main(args, plugins=[module]) == 0
        features = tmp_path / "out" / "features"
        before = set(features.glob("*.npy"))
        edit(pkg / "models.py", "out[i, zlib.crc32(t[j:j + 3].encode()) % self.dim] += 1.0",
             "out[i, zlib.crc32(t[j:j + 3].lower().encode()) % self.dim] += 1.0")
        assert main([*args, "--json"], plugins=[module]) == 0
        after = set(features.glob("*.npy"))
        assert len(after - before) == 1  # the trigram features again, under a new key; glove's are reused
        res = json.loads((tmp_path / "out" / "results.json").read_text())
        computed = {s["name"] for s in res["stages"] if not s["cached"]}
        assert computed == {"weak", "weak labels", "transfer[xent]"}  # the ceiling (glove) is served
    finally:
        for mod in [m for m in sys.modules if m.startswith(name)]:
            del sys.modules[mod]


# The ids of built-in op stages declared with a fixed context (no engine digest, no dataset), computed before the
# ops became a plugin kind (w2s_register_ops): moving train / label / combine / filter behind the op registry left
# every spec, and so every id, as it was. Only the code fingerprints (the engine digest in a real plan's context)
# change them.
PINNED_IDS = {
    "weak": "dcfb9a27e2913c2a", "bag": "25bd33f6169b318b", "labels": "fef8453bbb27b673",
    "bag_labels": "086e941155b0110f", "transfer": "c0a9172a72b981b6", "mean": "fca655146d704cc1",
    "weighted": "f2e825d4717789f1", "accuracy": "5968abf959d4ece8", "confidence": "cd994a5c0e12d07e",
    "learnability": "3af9b3f2b059d3aa",
}


def test_builtin_op_stage_ids_are_unchanged_by_the_op_registry():
    from w2s_harness import Component, PlanBuilder, StageKind, Subset

    class Cfg:
        weak, strong, losses = Component("w", {"dim": 8}), Component("s"), [Component("xent")]

    b = PlanBuilder(Cfg(), 3, {"dataset": "toy", "engine": "fixed"})
    weak = b.train(b.config.weak, on="train1", kind=StageKind.TRAIN_WEAK, name="weak")
    bag = b.train("w", on=Subset("train1", 1, 2, complement=True), kind=StageKind.TRAIN_SUPERVISOR)
    labels = b.label(weak, on="train2")
    bag_labels = b.label(bag, on=Subset("train2"))
    ids = {
        "weak": weak.id, "bag": bag.id, "labels": labels.id, "bag_labels": bag_labels.id,
        "transfer": b.train("s", on="train2", labels=labels, loss={"name": "logconf", "aux_coef": 0.3},
                            kind=StageKind.TRAIN_TRANSFER).id,
        "mean": b.combine([labels, bag_labels]).id,
        "weighted": b.combine([labels, bag_labels], how="weighted", weights=[1, 3]).id,
        "accuracy": b.combine([labels, bag_labels], how="accuracy",
                              scored_by=[(weak, "train1"), (bag, Subset("train1", 1, 2))]).id,
        "confidence": b.filter(labels, keep_frac=0.5).id,
        "learnability": b.filter(labels, keep_frac=0.25, by="learnability", reference=bag_labels).id,
    }
    assert ids == PINNED_IDS
    # the generic declaration of a built-in op is the same stage
    assert b.op("filter", inputs=[labels], params={"keep_frac": 0.5}).id == PINNED_IDS["confidence"]
