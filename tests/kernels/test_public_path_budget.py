"""The launch / byte budget and the sync-free step through the public loss and the real training loops.

``test_launch_budget.py`` and ``test_sync_free.py`` measure the dispatch layer; training does not call it
directly. Here the same tracing (``benchmarks/launch_budget.py``: a ``TorchDispatchMode`` counting torch ops
and host syncs, wrapped Triton launches, and ``Tensor.tolist`` / ``item`` / ``cpu`` / ``numpy`` calls from the
project's own code) follows the paths training takes:

* ``w2s_harness.create_loss(name, backend="triton")`` called as ``loss(z, y, step_frac, validate=False)`` (the
  targets checked once beforehand), after one warm-up call: xent / product <= 4 launches, logconf k = 2 <= 8,
  the bytes of the dispatch-layer budget at N = 2**20, no host sync. The default (checked) call is traced too:
  it adds the value checks' torch ops and exactly one host read, which is what ``validate=False`` removes;
* ``fit``, the linear-head AdamW loop and the fine-tuning loop, with that loss: the loss's part of a step keeps
  the budget, a head-loop step has no host sync outside the interval checks (every 64 steps, epoch ends,
  curve points), and a fine-tuning step has exactly one (its per-step finite check of the loss).

The traced training runs are real: their trained weights are compared with the same run on ``backend="torch"``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

BUDGET = {"xent": 4, "product": 4, "logconf": 8}
#: MiB at N = 2**20, k = 2, fp32: the dispatch-layer budget of test_launch_budget.py.
MIB = {"xent": 24.5, "product": 24.5, "logconf": 52.0}
#: the value checks of the checked call: a float64 copy, finiteness, row sums, the minimum (15 torch ops)
CHECK_OPS = 15


def _interpreted():
    import os

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("traces CPU tensors through the kernels: needs TRITON_INTERPRET=1 (the GPU run skips it)")


@pytest.mark.parametrize("loss", list(BUDGET))
def test_public_loss_as_training_calls_it_fits_the_budget(loss):
    import launch_budget as lb

    _interpreted()
    t = lb.trace_public_step(loss, 300, 2, validate=False, execute=True)
    assert t.launches <= BUDGET[loss], t.names()
    assert t.syncs == [], t.syncs
    assert t.sorts == 0, t.names()
    # the same launches as the dispatch layer: the public path adds nothing once the checks are off
    assert t.names() == lb.trace_step("fused", loss, 300, 2, execute=True).names()


@pytest.mark.parametrize("loss", list(BUDGET))
def test_public_loss_bytes_at_one_million_rows(loss):
    import launch_budget as lb

    t = lb.trace_public_step(loss, 1 << 20, 2, validate=False)
    assert t.launches <= BUDGET[loss], t.names()
    assert t.nbytes <= MIB[loss] * 2**20, t.nbytes / 2**20
    assert t.syncs == []


@pytest.mark.parametrize("loss", list(BUDGET))
def test_checked_call_costs_one_host_read_and_the_check_ops(loss):
    """The default call validates the targets: one ``.tolist()`` and the check ops (a float64 copy of the
    targets among them, 16 MiB at N = 2**20, k = 2), on top of the budgeted step."""
    import launch_budget as lb

    checked = lb.trace_public_step(loss, 1 << 20, 2, validate=True)
    fast = lb.trace_public_step(loss, 1 << 20, 2, validate=False)
    assert checked.syncs == ["Tensor.tolist"], checked.syncs
    assert checked.launches == fast.launches + CHECK_OPS, checked.names()
    assert len(checked.triton) == len(fast.triton)
    assert checked.nbytes - fast.nbytes >= 16 * 2**20  # the float64 copy alone: written once, read again


def test_public_step_matches_the_reference():
    """The traced public step computes the real loss and gradient (the wrappers change nothing)."""
    import launch_budget as lb

    _interpreted()
    from w2s_harness.kernels import reference

    z, y = lb.inputs(300, 2)
    loss = lb.public_loss("logconf")
    t = lb.Trace()
    with lb.traced(t, execute=True, host_reads=True):
        v = loss(z, y, 0.5, validate=False)
        v.backward()
    zr = z.detach().clone().requires_grad_()
    rv = reference.logconf_loss(zr, y, coef=0.5)
    rv.backward()
    torch.testing.assert_close(v, rv, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z.grad, zr.grad, rtol=1e-4, atol=1e-6)
    assert t.syncs == [] and len(t.triton) == 4


def _weights(module):
    return torch.cat([p.detach().flatten().cpu() for p in module.parameters()])


@pytest.mark.parametrize("loss", ["xent", "product", "logconf"])
def test_head_loop_step_is_sync_free_and_within_the_budget(loss, device):
    import launch_budget as lb

    _interpreted()
    ft = lb.trace_fit(loss, loop="head", epochs=2, device=device)  # 4 steps per epoch, 8 in all
    assert ft.result["steps"] == 8 and len(ft.steps) == 8 and len(ft.loss) == 8
    for s in (1, 2, 3, 5, 6, 7):  # step 0 checks the table once; step 4 follows the epoch-end interval
        assert ft.steps[s].syncs == [], (s, ft.steps[s].syncs)
        assert ft.loss[s].launches <= BUDGET[loss], (s, ft.loss[s].names())
        assert ft.loss[s].syncs == []
    # the one-off check of the whole target table, and the epoch-end interval, do read the device (so an empty
    # list above means something)
    assert "Tensor.tolist" in ft.steps[0].syncs
    assert "nonzero" in ft.steps[4].syncs and "nonzero" in ft.tail.syncs
    _same_training_as_torch(ft, loss, "head", device)


@pytest.mark.parametrize("loss", ["xent", "logconf"])
def test_finetune_loop_step_syncs(loss, device):
    """The fine-tuning loop reads its loss back once per step (its finite check runs every step: a NaN stops
    a fine-tune at once). On a GPU the model's own input copy host -> device (the stand-in's features here, a
    tokenised batch for a text model) waits too; a CPU trace cannot see it (gpu_check.py's train step counts
    syncs on the device)."""
    import launch_budget as lb

    _interpreted()
    ft = lb.trace_fit(loss, loop="finetune", epochs=2, device=device)
    for s in (2, 3, 6, 7):  # the finite check of step s - 1 runs after its progress call: in span s
        assert ft.steps[s].syncs == ["nonzero"], (s, ft.steps[s].syncs)
        assert ft.loss[s].launches <= BUDGET[loss], (s, ft.loss[s].names())
    _same_training_as_torch(ft, loss, "finetune", device)


def _same_training_as_torch(ft, loss, loop, device):
    """The traced run trained for real: the same run through ``backend="torch"`` gives the same weights."""
    import launch_budget as lb

    torch_run = lb.trace_fit(loss, loop=loop, epochs=2, device=device, backend="torch")
    w, w_ref = _weights(ft.module), _weights(torch_run.module)
    assert w.abs().max() > 1e-3  # it trained
    torch.testing.assert_close(w, w_ref, rtol=1e-4, atol=1e-6)
