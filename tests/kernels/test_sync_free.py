"""One fused forward + backward has no host synchronisation, so it can be captured in a CUDA graph.

Traced on the CPU (the kernels run in the interpreter with the trace paused, so the interpreter's own copies
are not seen): every aten op of the step goes through a ``TorchDispatchMode`` that records the ops that make
the host wait for the device (``_local_scalar_dense``, i.e. ``.item()`` / ``bool()`` / ``float()``,
``nonzero``, ``masked_select``, boolean-mask indexing, ``unique``, ...), and ``Tensor.cpu`` / ``tolist`` /
``numpy`` / ``item`` called from the project's own code are recorded too (on CPU tensors they dispatch
nothing). k = 2 for each loss, the rolling-buffer logconf (the plugin with ``buffer_size``, k = 2 and 3) and
balanced logconf at k = 3. Each traced step is also checked against the reference, and the trace is shown to
catch a sync (the reference's k > 2 peeling, which has them).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest
import torch
from _kernel_cases import F32, assert_close_grad, assert_close_loss, make_inputs, value_and_grad
from torch.utils._python_dispatch import TorchDispatchMode

pytestmark = pytest.mark.kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

class _SyncWatch(TorchDispatchMode):
    """Records the aten ops that wait for the device (``launch_budget.sync_op``: the rules the budget uses)."""

    def __init__(self, found: list):
        super().__init__()
        self.found = found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        import launch_budget as lb

        kwargs = kwargs or {}
        sync = lb.sync_op(func, args, kwargs)
        if sync is not None:
            self.found.append(sync)
        return func(*args, **kwargs)


def _project_dirs():
    from w2s_harness import kernels, plugins

    return (str(Path(kernels.__file__).parent), str(Path(plugins.__file__).parent))


@pytest.fixture
def watch(monkeypatch):
    """``with watch() as found:`` records the syncs of the enclosed step (list of op / method names)."""
    import launch_budget as lb

    found: list = []
    mine = _project_dirs()

    def guard(name):
        orig = getattr(torch.Tensor, name)

        @functools.wraps(orig)
        def method(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(mine):
                found.append(f"Tensor.{name}")
            return orig(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, method)

    for name in ("cpu", "tolist", "numpy", "item"):
        guard(name)

    class _Ctx:
        def __enter__(self):
            self.trace = lb.Trace()
            self.cm = lb.traced(self.trace, execute=True)
            self.cm.__enter__()
            self.mode = _SyncWatch(found)
            self.mode.__enter__()
            return found

        def __exit__(self, *exc):
            self.mode.__exit__(*exc)
            self.cm.__exit__(*exc)
            watch.trace = self.trace
            return False

    def watch():
        return _Ctx()

    return watch


def _step(fn, z, y):
    zz = z.detach().clone().requires_grad_()
    v = fn(zz, y)
    v.backward()
    return v.detach(), zz.grad


def _plugin(k, device, buffer_size=40):
    from w2s_harness.plugins.losses.logconf import LogConfLoss

    loss = LogConfLoss(buffer_size=buffer_size, warmup_frac=0.0, backend="triton")
    for seed in (11, 12):  # a buffer already holding earlier batches
        z, y = make_inputs("random", 24, k, F32, seed=seed, device=device)
        loss.compute(z.detach(), y, 0.5)
    return loss


CASES = {
    "xent k=2": (2, lambda ops: functools.partial(ops.soft_xent)),
    "product k=2": (2, lambda ops: functools.partial(ops.product_loss, alpha=0.5, beta=2.0)),
    "logconf balanced k=2": (2, lambda ops: functools.partial(ops.logconf_loss, coef=0.5)),
    "logconf argmax k=2": (2, lambda ops: functools.partial(ops.logconf_loss, coef=0.5, balance=False)),
    "logconf balanced k=3": (3, lambda ops: functools.partial(ops.logconf_loss, coef=0.5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fused_step_has_no_host_sync(case, watch, device):
    from w2s_harness.kernels import reference, triton_ops

    k, make = CASES[case]
    z, y = make_inputs("ties", 48, k, F32, seed=k, device=device)
    with watch() as found:
        v, grad = _step(make(triton_ops), z, y)
    assert found == [], (case, found)
    assert watch.trace.triton, "no Triton launch traced"  # the fused path ran
    rv, rgrad = value_and_grad(make(reference), z, y)
    assert_close_loss(v, rv, F32, case)
    assert_close_grad(grad, rgrad, F32, case)


@pytest.mark.parametrize("k", [2, 3])
def test_rolling_buffer_step_has_no_host_sync(k, watch, device):
    from w2s_harness.plugins.losses.logconf import LogConfLoss

    fused = _plugin(k, device)
    z, y = make_inputs("ties", 24, k, F32, seed=3, device=device)
    with watch() as found:
        v, grad = _step(lambda a, b: fused.compute(a, b, 0.5), z, y)
    assert found == [], (k, found)
    assert watch.trace.triton
    ref = LogConfLoss(buffer_size=40, warmup_frac=0.0, backend="torch")
    for seed in (11, 12):
        zz, yy = make_inputs("random", 24, k, F32, seed=seed, device=device)
        ref.compute(zz.detach(), yy, 0.5)
    rv, rgrad = value_and_grad(lambda a, b: ref.compute(a, b, 0.5), z, y)
    assert_close_loss(v, rv, F32, f"k={k}")
    assert_close_grad(grad, rgrad, F32, f"k={k}")


def test_the_trace_sees_syncs(watch, device):
    """The reference's k > 2 peeling indexes with boolean masks and tests ``bool(mass > 0)``: host syncs,
    which the same trace reports (so an empty list above means something)."""
    from w2s_harness.kernels import reference

    z, y = make_inputs("random", 16, 3, F32, device=device)
    with watch() as found:
        reference.logconf_loss(z, y, coef=0.5).backward()
    assert "_local_scalar_dense" in found and "index[bool mask]" in found, found


def test_captured_step_eager_mode_on_cpu(watch):
    """``CapturedLossStep`` with ``capture=False`` (what runs without CUDA): the static-buffer interface gives
    the loss and gradient of a direct step for successive batches, and its step is sync-free (the property
    that makes the CUDA capture possible). The capture itself needs a GPU (benchmarks/gpu_check.sh)."""
    from w2s_harness.kernels import reference, triton_ops
    from w2s_harness.kernels.graphs import CapturedLossStep

    fn = functools.partial(triton_ops.logconf_loss, coef=0.5)
    z0, y0 = make_inputs("random", 40, 2, F32, seed=1)
    step = CapturedLossStep(fn, z0, y0, capture=False)
    for seed in (2, 3):
        z, y = make_inputs("ties" if seed == 3 else "random", 40, 2, F32, seed=seed)
        with watch() as found:
            v, grad = step(z, y)
        assert found == []
        rv, rgrad = value_and_grad(functools.partial(reference.logconf_loss, coef=0.5), z, y)
        assert_close_loss(v, rv, F32, str(seed))
        assert_close_grad(grad, rgrad, F32, str(seed))
    with pytest.raises(ValueError, match="one CapturedLossStep per batch shape"):
        step(z0[:5], y0[:5])
    with pytest.raises(ValueError, match="capture=False"):
        CapturedLossStep(fn, z0, y0, capture=True)


def test_captured_step_replays_on_cuda(device):
    if device != "cuda":
        pytest.skip("CUDA graph capture needs a CUDA GPU and the compiled kernels (no interpreter)")
    from w2s_harness.kernels import reference, triton_ops
    from w2s_harness.kernels.graphs import CapturedLossStep

    fn = functools.partial(triton_ops.logconf_loss, coef=0.5)
    z0, y0 = make_inputs("random", 4096, 2, F32, seed=1, device="cuda")
    step = CapturedLossStep(fn, z0, y0)
    assert step.graph is not None
    for seed in (2, 3):
        z, y = make_inputs("random", 4096, 2, F32, seed=seed, device="cuda")
        v, grad = step(z, y)
        rv, rgrad = value_and_grad(functools.partial(reference.logconf_loss, coef=0.5), z, y)
        assert_close_loss(v, rv, F32, str(seed))
        assert_close_grad(grad, rgrad, F32, str(seed))
