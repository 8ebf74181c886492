"""Tests of the example stage op ``example-agree`` and the strategy ``example-agreement`` that uses it.

A real run through the CLI (``main(argv, plugins=[...])``), then the stored arrays of its stages: the agreement
stage must keep exactly the train2 rows on which the two label stages' argmax agree (computed here from those
stages' own ``artifact.npz``), and the transfer must train on exactly those rows. Public API only.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import w2s_example_plugin

from w2s_harness import (
    Component,
    ConfigError,
    PlanBuilder,
    RunConfig,
    StageKind,
    create_plugin_manager,
    main,
    make_plan,
)

RUN = ["--dataset", "example-parity", "--weak", "example-charhash", "--set", "weak.dim=8",
       "--strong", "example-charhash", "--loss", "example-smoothed-xent", "--strategy", "example-agreement",
       "--seeds", "0,1", "--workers", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def pm():
    return create_plugin_manager(plugins=[w2s_example_plugin], entry_points=False)


def _config(**strategy) -> RunConfig:
    cfg = RunConfig(Component("example-parity"), Component("example-charhash", {"dim": 8}),
                    Component("example-charhash"), [Component("example-smoothed-xent")],
                    Component("example-agreement", strategy))
    cfg.run.seeds = [0]
    return cfg


def test_the_op_is_registered_and_checks_its_parameters(pm):
    assert [e.name for e in pm.registry("op") if e.plugin == w2s_example_plugin.__name__] == ["example-agree"]
    with pytest.raises(ConfigError, match="soft='max'; use one of first, mean"):
        pm.create("op", "example-agree", soft="max")
    with pytest.raises(ConfigError, match="has no parameter 'keep'"):
        pm.create("op", "example-agree", keep=0.5)


def test_plan_agreement_stage_between_the_two_label_stages_and_the_transfer(pm):
    plan = make_plan(_config(), pm, content=False)
    by_name = {s.name: s for s in plan.stages}
    agree = by_name["agreement[first]"]
    assert (agree.op, agree.kind) == ("example-agree", StageKind.FILTER)
    assert [by_name[n].id for n in ("weak labels", "partner labels")] == list(agree.deps)
    assert agree.spec["soft"] == "first"  # the default, resolved into the id
    transfer = by_name["example-agreement transfer[example-smoothed-xent]"]
    assert transfer.deps == (agree.id,)
    assert by_name["partner[half]"].spec["on"] == {"split": "train1", "part": 1, "parts": 2, "complement": False}
    rows = {e.name for e in plan.experiments[0]}
    assert rows == {"naive/example-smoothed-xent", "example-agreement/example-smoothed-xent"}


def test_an_op_input_must_be_a_label_stage(pm):
    b = PlanBuilder(_config(), 0, {}, ops=pm.registry("op"))
    ref = b.reference()
    with pytest.raises(ConfigError, match="input 'labels' needs stages that produce labels; stage 'weak'"):
        b.op("example-agree", inputs=[ref.labels, ref.weak])
    with pytest.raises(ConfigError, match="input 'labels' takes at least 2 stage"):
        b.op("example-agree", inputs=[ref.labels])


def test_run_keeps_exactly_the_rows_where_the_two_weak_labels_agree(tmp_path):
    out = tmp_path / "run"
    assert main(["run", *RUN, "--output-dir", str(out)], plugins=[w2s_example_plugin]) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["status"] == "complete"
    assert {e["name"] for e in results["experiments"]} == {"naive/example-smoothed-xent",
                                                           "example-agreement/example-smoothed-xent"}
    stages = {(s["seed"], s["name"]): s for s in results["stages"]}

    def arrays(stage):
        with np.load(out / "stages" / stage["id"] / "artifact.npz") as npz:
            return {k: npz[k] for k in npz.files}

    for seed in (0, 1):
        weak, partner = arrays(stages[seed, "weak labels"]), arrays(stages[seed, "partner labels"])
        agree_stage = stages[seed, "agreement[first]"]
        assert agree_stage["spec"]["deps"] == [stages[seed, "weak labels"]["id"], stages[seed, "partner labels"]["id"]]
        kept = arrays(agree_stage)
        # the expected rows, from the two label stages' stored arrays alone
        partner_probs = dict(zip(partner["indices"].tolist(), partner["probs"]))
        expected = sorted(int(r) for r, p in zip(weak["indices"], weak["probs"])
                          if p.argmax() == partner_probs[int(r)].argmax())
        assert 0 < len(expected) < len(weak["indices"])  # the two supervisors disagree somewhere
        assert sorted(kept["indices"].tolist()) == expected
        weak_probs = dict(zip(weak["indices"].tolist(), weak["probs"]))
        assert all(np.array_equal(p, weak_probs[int(r)]) for r, p in zip(kept["indices"], kept["probs"]))
        assert agree_stage["metrics"]["n"] == len(expected)
        transfer = stages[seed, "example-agreement transfer[example-smoothed-xent]"]
        assert transfer["spec"]["deps"] == [agree_stage["id"]]
        assert transfer["metrics"]["n_train"] == len(expected)

    # a second run is served from the cache
    assert main(["run", *RUN, "--output-dir", str(out)], plugins=[w2s_example_plugin]) == 0
    again = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert again["timings"]["stages_computed"] == 0
