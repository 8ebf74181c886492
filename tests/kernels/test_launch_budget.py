"""Launch / byte budget of one forward + backward of the fused paths, checked on a CPU (no GPU needed).

``benchmarks/launch_budget.py`` counts torch ops (a ``TorchDispatchMode``; allocations and views excluded) and
Triton launches (a wrapper around the launch; the interpreter's own copies are not counted). Budget, at k = 2:
xent and product at most 4 launches, balanced logconf at most 8 and no sort (the threshold is a radix select,
not ``torch.quantile``'s sort). The kernels run in the interpreter here, so the traced step is also checked
against the reference; the byte model is evaluated at N = 2**20 with the launches recorded but not run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

def _need_interpreter():
    """The traced steps with ``execute=True`` run on CPU tensors: through the interpreter only."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("runs the kernels on CPU tensors: needs TRITON_INTERPRET=1 (the GPU run skips it)")


BUDGET = {"xent": 4, "product": 4, "logconf": 8}
#: MiB moved at N = 2**20, k = 2, fp32 (the model of launch_budget.py): the compulsory 24 MiB (read logits and
#: targets, write the gradient) plus, for logconf, the level's mean over the targets, two select passes over
#: the logits and the 512 KiB histogram workspace.
MIB = {"xent": 24.5, "product": 24.5, "logconf": 52.0}


@pytest.mark.parametrize("loss", list(BUDGET))
def test_fused_step_fits_the_launch_budget(loss):
    import launch_budget as lb

    _need_interpreter()
    t = lb.trace_step("fused", loss, 300, 2, execute=True)
    assert t.launches <= BUDGET[loss], t.names()
    assert t.sorts == 0, t.names()
    assert not any(n in ("quantile", "kthvalue", "topk", "sort", "argsort") for n in t.names()), t.names()
    eager = lb.trace_step("eager", loss, 300, 2, execute=True)
    assert eager.launches > t.launches


@pytest.mark.parametrize("loss", list(BUDGET))
def test_fused_step_bytes_at_one_million_rows(loss):
    import launch_budget as lb

    n = 1 << 20
    t = lb.trace_step("fused", loss, n, 2, execute=False)
    assert t.launches <= BUDGET[loss], t.names()
    assert t.nbytes <= MIB[loss] * 2**20, (t.nbytes / 2**20, t.triton, t.torch_ops)


def test_traced_step_still_matches_the_reference():
    """The counting wrappers pass launches through unchanged (execute=True)."""
    import launch_budget as lb

    _need_interpreter()
    from w2s_harness.kernels import reference, triton_ops

    z, y = lb.inputs(300, 2)
    t = lb.Trace()
    with lb.traced(t, execute=True):
        v = triton_ops.logconf_loss(z, y, coef=0.5)
    torch.testing.assert_close(v, reference.logconf_loss(z, y, coef=0.5), rtol=1e-5, atol=1e-5)
