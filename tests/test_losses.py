"""Losses (issue 4): every built-in loss against an independent, straightforward implementation.

The ``oa_*`` functions restate openai/weak-to-strong ``weak_to_strong/loss.py`` operation for operation
(with an optional compute dtype so the comparison can also run in float64). ``ee_*`` restate EleutherAI/w2s
``w2s/loss.py``. ``np_*`` are plain numpy loops for the k-class hardening documented in
``kernels/fused/reference.py``. Nothing here calls ``w2s_harness.kernels.reference`` to produce an expected value.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from w2s_harness._contracts.errors import ConfigError, InputError
from w2s_harness._plugin_system.manager import create_plugin_manager

F64, F32 = torch.float64, torch.float32
NAMES = ("xent", "product", "logconf", "kl", "entropy", "window")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pm():
    return create_plugin_manager(entry_points=False)


def make(pm, name, **params):
    return pm.create("loss", name, **params)


# ------------------------------------------------------------------------------ independent references


def oa_xent(logits, labels):
    return F.cross_entropy(logits, labels).mean()


def oa_product(logits, labels, alpha=1.0, beta=1.0):
    preds = torch.softmax(logits, dim=-1)
    target = torch.pow(preds, beta) * torch.pow(labels, alpha)
    target /= target.sum(dim=-1, keepdim=True)
    target = target.detach()
    return F.cross_entropy(logits, target, reduction="none").mean()


def oa_coef(step_frac, aux_coef=0.5, warmup_frac=0.1):
    coef = 1.0 if step_frac > warmup_frac else step_frac
    return coef * aux_coef


def oa_logconf(logits, labels, step_frac, aux_coef=0.5, warmup_frac=0.1, dtype=F32):
    logits = logits.to(dtype)  # the reference: logits.float()
    labels = labels.to(dtype)
    coef = oa_coef(step_frac, aux_coef, warmup_frac)
    preds = torch.softmax(logits, dim=-1)
    mean_weak = torch.mean(labels, dim=0)
    assert mean_weak.shape == (2,)
    threshold = torch.quantile(preds[:, 0], mean_weak[1])
    strong_preds = torch.cat([(preds[:, 0] >= threshold)[:, None], (preds[:, 0] < threshold)[:, None]], dim=1)
    target = labels * (1 - coef) + strong_preds.detach() * coef
    return F.cross_entropy(logits, target, reduction="none").mean()


def linear_coef(step_frac, aux_coef=0.5, warmup_frac=0.1):
    return aux_coef * min(1.0, step_frac / warmup_frac)


def ce_rows(logits, target):
    return -(target * torch.log_softmax(logits, dim=-1)).sum(dim=-1)


def np_cond(z, c):
    x = z[:, c:]
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e[:, 0] / e.sum(axis=1)


def np_harden(z, y, balance=True, pool=None):
    """One-vs-rest peeling exactly as documented, written as plain loops."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, k = z.shape
    if not balance:
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return np.eye(k)[np.argmax(p / p.sum(axis=1, keepdims=True), axis=1)]
    m = y.mean(axis=0)
    ref = z if pool is None else np.asarray(pool, dtype=np.float64)
    cls = np.full(n, -1)
    cls_ref = np.full(len(ref), -1)
    for c in range(k - 1):
        s, s_ref = np_cond(z, c), np_cond(ref, c)
        cand = [s_ref[j] for j in range(len(ref)) if cls_ref[j] < 0]
        mass = 1.0 if c == 0 else m[c:].sum()
        if not cand or mass <= 0:
            for i in range(n):
                if cls[i] < 0:
                    e = np.exp(z[i, c:] - z[i, c:].max())
                    cls[i] = c + int(np.argmax(e / e.sum()))
            break
        q = m[c + 1 :].sum() / mass
        thr = np.quantile(np.array(cand), min(max(q, 0.0), 1.0))  # linear interpolation, as torch.quantile
        for i in range(n):
            if cls[i] < 0 and s[i] >= thr:
                cls[i] = c
        for j in range(len(ref)):
            if cls_ref[j] < 0 and s_ref[j] >= thr:
                cls_ref[j] = c
    cls[cls < 0] = k - 1
    return np.eye(k)[cls]


def np_logconf(logits, labels, coef, balance=True, pool=None, dtype=F64):
    h = torch.as_tensor(
        np_harden(logits.detach().double().numpy(), labels.double().numpy(), balance, pool), dtype=dtype
    )
    z = logits.to(dtype)
    y = labels.to(dtype)
    return ce_rows(z, y * (1 - coef) + h * coef).mean()


def ee_kl(logits, labels):
    return F.kl_div(
        torch.log_softmax(logits.float() if logits.dtype != F64 else logits, -1),
        labels,
        reduction="batchmean",
    )


def ee_window_strong(logits, labels, radius=0.15):
    preds = torch.softmax(logits, dim=-1)
    uncertain = preds.max(dim=-1).values < 0.5 + radius
    loss = F.cross_entropy(logits[uncertain], labels[uncertain], reduction="sum")
    return loss / logits.shape[0]


# ------------------------------------------------------------------------------------------- helpers


def inputs(case: str, n: int, k: int, dtype=F64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=F64) * 3
    y = torch.softmax(torch.randn(n, k, generator=g, dtype=F64) * 2, dim=-1)
    if case == "hard":
        y = F.one_hot(torch.randint(0, k, (n,), generator=g), k).to(F64)
    elif case == "ties":  # few distinct rows: ties in the quantile
        base = torch.randn(3, k, generator=g, dtype=F64)
        z = base[torch.randint(0, 3, (n,), generator=g)]
    elif case == "zeros":  # zero-initialised head: every prediction tied
        z = torch.zeros(n, k, dtype=F64)
    elif case == "one_class":  # all weak labels in one class
        y = F.one_hot(torch.zeros(n, dtype=torch.long), k).to(F64)
    elif case == "last_class":
        y = F.one_hot(torch.full((n,), k - 1, dtype=torch.long), k).to(F64)
    elif case == "extreme":
        z = (torch.randint(0, 2, (n, k), generator=g) * 2 - 1).to(F64) * 1e4
    return z.to(dtype), y.to(dtype if dtype in (F64, F32) else F32)


def vg(fn, z):
    """(value, grad wrt logits)."""
    z = z.detach().clone().requires_grad_(True)
    v = fn(z)
    (g,) = torch.autograd.grad(v, z)
    return v.detach(), g


def close(a, b, tol=1e-6):
    torch.testing.assert_close(a.to(F64), b.to(F64), atol=tol, rtol=tol, equal_nan=False)


CASES = ("random", "hard", "ties", "zeros", "one_class", "last_class", "extreme")
SIZES = (1, 2, 7, 32)
FEW_SIZES = (1, 7, 32)


# -------------------------------------------------------------------------------------- registration


def test_all_losses_registered(pm):
    reg = pm.registry("loss")
    assert set(NAMES) <= set(reg.names())
    for name in NAMES:
        entry, _ = reg.resolve(name)
        assert entry.description and "\n" not in entry.description
        assert entry.parameters() is not None  # explicit keyword parameters, no **kwargs
        assert "backend" in entry.parameters()
        assert entry.plugin == "builtin:losses"


def test_create_loss_public_api():
    import w2s_harness

    loss = w2s_harness.create_loss("product", alpha=1.0, beta=1.0)
    z, y = inputs("random", 4, 2)
    close(loss(z, y), oa_product(z, y))


def test_unknown_param_is_config_error(pm):
    with pytest.raises(ConfigError, match="aux_coeff"):
        make(pm, "logconf", aux_coeff=0.5)


# ---------------------------------------------------------------------------------------------- xent


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("k", [2, 5])
def test_xent_matches_reference(pm, dtype, case, k):
    loss = make(pm, "xent")
    for n in SIZES:
        z, y = inputs(case, n, k, dtype, seed=n)
        v, g = vg(lambda t, y=y: loss(t, y, step_frac=0.3), z)
        ev, eg = vg(lambda t, y=y: oa_xent(t, y), z)
        assert v.dtype == dtype
        close(v, ev)
        close(g, eg)


def test_int_labels_equal_one_hot(pm):
    z, _ = inputs("random", 9, 3)
    ids = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1, 2])
    for name in NAMES:
        loss = make(pm, name)
        close(loss(z, ids, 0.5), make(pm, name)(z, F.one_hot(ids, 3).double(), 0.5))


# ------------------------------------------------------------------------------------------- product


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 2.0), (0.0, 1.0), (1.0, 0.0)])
@pytest.mark.parametrize("k", [2, 4])
def test_product_matches_reference(pm, dtype, alpha, beta, k):
    loss = make(pm, "product", alpha=alpha, beta=beta)
    for case in ("random", "ties", "zeros", "one_class", "hard"):
        for n in FEW_SIZES:
            z, y = inputs(case, n, k, dtype, seed=n + 7)
            ev, eg = vg(lambda t, y=y: oa_product(t, y, alpha, beta), z)
            if not torch.isfinite(ev):  # reference undefined (zero row): covered by the policy tests
                continue
            v, g = vg(lambda t, y=y: loss(t, y), z)
            close(v, ev)
            close(g, eg)


@pytest.mark.parametrize("dtype", [F64, F32])
def test_product_extreme_logits_soft_labels_match_reference(pm, dtype):
    z, y = inputs("extreme", 16, 3, dtype)
    ev, eg = vg(lambda t: oa_product(t, y), z)
    assert torch.isfinite(ev)
    v, g = vg(lambda t: make(pm, "product")(t, y), z)
    close(v, ev)
    close(g, eg)


@pytest.mark.parametrize("dtype", [F64, F32, torch.float16, torch.bfloat16])
def test_product_zero_row_policy(pm, dtype):
    """Hard weak label on a class the model gives probability 0 (underflow): the reference's target row is
    0/0 = NaN. Ours is the exact limit of normalise(p * y), which is y for a hard label. The loss and
    gradient are finite, and the well-defined rows still equal the reference."""
    z = torch.tensor([[1e4, -1e4], [0.3, -0.2], [-1e4, 1e4]], dtype=dtype)
    y = torch.tensor([[0.0, 1.0], [0.4, 0.6], [1.0, 0.0]], dtype=F32 if dtype != F64 else F64)
    with torch.no_grad():
        assert torch.isnan(oa_product(z.to(y.dtype), y))  # the reference breaks here
    v, g = vg(lambda t: make(pm, "product")(t, y), z)
    assert torch.isfinite(v) and torch.isfinite(g).all()
    # expected: CE against t = [y0, product row, y2]
    zz = z.to(y.dtype)
    p1 = torch.softmax(zz[1], -1) * y[1]
    t = torch.stack([y[0], p1 / p1.sum(), y[2]])
    ev, eg = vg(lambda u: ce_rows(u.to(y.dtype), t).mean(), z)
    tol = 1e-6 if dtype in (F64, F32) else 1e-2
    close(v, ev, tol)
    close(g, eg, tol)


def test_product_soft_label_partial_underflow_matches_limit(pm):
    # float32 product 0.3 * exp(-104) underflows, but a soft weak label keeps the row defined: the limit is
    # the weak label's class, and it matches the reference.
    z = torch.tensor([[0.0, -104.0], [-104.0, 0.0]])
    y = torch.tensor([[0.0, 1.0], [0.7, 0.3]])
    v, g = vg(lambda t: make(pm, "product")(t, y), z)
    assert torch.isfinite(v) and torch.isfinite(g).all()
    ev, eg = vg(lambda t: ce_rows(t, torch.tensor([[0.0, 1.0], [0.0, 1.0]])).mean(), z)
    close(v, ev, 1e-5)
    close(g, eg)


def exact_product_target(z_row, y_row, alpha, beta):
    """``normalise(softmax(z)**beta * y**alpha)`` in 50-digit decimal arithmetic (nothing underflows)."""
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 50
        zs = [Decimal(float(v)) for v in z_row]
        top = max(zs)
        e = [(v - top).exp() for v in zs]
        p = [x / sum(e) for x in e]
        a, b = Decimal(float(alpha)), Decimal(float(beta))
        one = Decimal(1)
        w = [(pj**b if b else one) * (Decimal(float(yj)) ** a if a else one) for pj, yj in zip(p, y_row)]
        return [float(x / sum(w)) for x in w]


def all_underflow_rows(dtype):
    """Soft weak labels whose float product ``p**beta * y**alpha`` is 0 in EVERY class of the compute dtype
    (float32 for fp16/bf16/fp32, float64 for fp64), for every alpha > 0 and beta >= 1 used below: the weak
    label puts no mass on the class the model predicts, and the model gives the other classes
    ``exp(-gap)`` (below the smallest subnormal). Logits are integers, exact in bf16/fp16 too."""
    gap = 800.0 if dtype == F64 else 120.0
    z = torch.tensor([[0.0, -gap, -gap - 3], [-gap, -gap - 3, 0.0], [0.0, -gap, -gap], [-gap, 0.0, -gap - 3]])
    y = torch.tensor([[0.0, 0.2, 0.8], [0.3, 0.7, 0.0], [0.0, 0.5, 0.5], [0.6, 0.0, 0.4]])
    return z.to(dtype), y.to(F64 if dtype == F64 else F32)


@pytest.mark.parametrize("dtype", [F64, F32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 2.0), (2.0, 1.0)])
def test_product_soft_label_all_underflow_is_the_exact_limit(pm, dtype, alpha, beta):
    """The float product underflows to an all-zero row for soft labels: the reference computes 0/0 = NaN; the
    target is the exact value of the normalised product (decimal arithmetic here), NOT the weak label's
    class: ``y = [0, 0.2, 0.8]`` with logits ``[0, -120, -123]`` gives ``t ~ [0, 0.83, 0.17]`` for
    alpha = beta = 1 (``e**3`` from the strong model outweighs the weak label's factor 4). Loss and gradient
    are finite and equal soft CE against that target."""
    z, y = all_underflow_rows(dtype)
    cd = y.dtype  # the compute dtype
    with torch.no_grad():
        p = torch.softmax(z.to(cd), -1)
        assert ((p**beta) * (y**alpha) == 0).all()  # every class underflows
        assert torch.isnan(oa_product(z.to(cd), y, alpha, beta)).all()  # so the reference is NaN everywhere
    t = torch.tensor([exact_product_target(z[i].to(cd), y[i], alpha, beta) for i in range(len(z))], dtype=cd)
    if (alpha, beta) == (1.0, 1.0):
        r = 0.25 * np.e**3  # t1 / t2 = (0.2 / 0.8) * exp(-120) / exp(-123)
        close(t[0], torch.tensor([0.0, r / (1 + r), 1 / (1 + r)], dtype=cd))
        assert t[0].argmax() != y[0].argmax()  # the limit is not the weak label's class
    v, g = vg(lambda u: make(pm, "product", alpha=alpha, beta=beta)(u, y), z)
    assert torch.isfinite(v) and torch.isfinite(g).all()
    ev, eg = vg(lambda u: ce_rows(u.to(cd), t).mean(), z)
    tol = 1e-6 if dtype in (F64, F32) else 1e-2
    close(v, ev, tol)
    close(g, eg, tol)


def test_product_nonfinite_logits_fall_back_to_weak_labels():
    from w2s_harness.kernels.reference import product_targets

    z = torch.tensor([[float("-inf"), 0.0], [float("nan"), 1.0], [0.0, 0.0]])
    y = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.25, 0.75]])
    t = product_targets(z, y)
    close(t[:2], y[:2])
    close(t[2], y[2])


# ------------------------------------------------------------------------------------------- logconf


@pytest.mark.parametrize("step_frac", [0.0, 0.05, 0.1, 0.10001, 0.7, 1.0])
def test_logconf_schedules(pm, step_frac):
    openai = make(pm, "logconf", warmup="openai", aux_coef=0.5, warmup_frac=0.1)
    linear = make(pm, "logconf", warmup="linear", aux_coef=0.5, warmup_frac=0.1)
    expected_openai = {0.0: 0.0, 0.05: 0.025, 0.1: 0.05, 0.10001: 0.5, 0.7: 0.5, 1.0: 0.5}[step_frac]
    expected_linear = {0.0: 0.0, 0.05: 0.25, 0.1: 0.5, 0.10001: 0.5, 0.7: 0.5, 1.0: 0.5}[step_frac]
    assert openai.coef(step_frac) == pytest.approx(expected_openai, abs=1e-12)
    assert linear.coef(step_frac) == pytest.approx(expected_linear, abs=1e-12)
    assert openai.coef(step_frac) == pytest.approx(oa_coef(step_frac), abs=1e-15)
    assert linear.coef(step_frac) == pytest.approx(linear_coef(step_frac), abs=1e-15)


def test_logconf_linear_zero_warmup_is_constant(pm):
    loss = make(pm, "logconf", warmup_frac=0.0, aux_coef=0.3)
    assert loss.coef(0.0) == 0.3 and loss.coef(1.0) == 0.3


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("step_frac", [0.0, 0.04, 0.5])
def test_logconf_openai_float32_exact(pm, case, step_frac):
    """The literal reference (float32 maths) on float32 logits."""
    loss = make(pm, "logconf", warmup="openai")
    for n in SIZES:
        z, y = inputs(case, n, 2, F32, seed=3 * n)
        v, g = vg(lambda t, y=y: loss(t, y, step_frac=step_frac), z)
        ev, eg = vg(lambda t, y=y: oa_logconf(t, y, step_frac), z)
        assert v.dtype == F32
        close(v, ev)
        close(g, eg)


@pytest.mark.parametrize("case", CASES)
def test_logconf_float64(pm, case):
    loss = make(pm, "logconf", warmup="linear", aux_coef=0.4, warmup_frac=0.2)
    for n in SIZES:
        z, y = inputs(case, n, 2, F64, seed=5 * n)
        for step_frac in (0.1, 0.9):
            coef_ref_step = linear_coef(step_frac, 0.4, 0.2)
            v, g = vg(lambda t, step_frac=step_frac, y=y: loss(t, y, step_frac), z)
            # the reference formula at the linear coefficient (aux_coef=1, warmup_frac=0 turns oa_coef into c)
            ev, eg = vg(
                lambda t, coef_ref_step=coef_ref_step, y=y: oa_logconf(
                    t, y, 1.0, aux_coef=coef_ref_step, warmup_frac=0.0, dtype=F64
                ),
                z,
            )
            assert v.dtype == F64
            close(v, ev)
            close(g, eg)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_logits_use_float32_maths(pm, dtype, name):
    loss = make(pm, name)
    for case in ("random", "ties", "extreme"):
        z, y = inputs(case, 12, 2, dtype, seed=11)
        v, g = vg(lambda t, y=y: loss(t, y, 0.5), z)
        v32, g32 = vg(lambda t, y=y: loss(t, y, 0.5), z.float())
        assert v.dtype == F32 and g.dtype == dtype
        assert torch.isfinite(v) and torch.isfinite(g).all()
        close(v, v32, 0)  # same float32 computation
        assert torch.equal(g, g32.to(dtype))


def test_logconf_low_precision_matches_reference(pm):
    for dtype in (torch.float16, torch.bfloat16):
        z, y = inputs("random", 32, 2, dtype, seed=1)
        v, g = vg(lambda t, y=y: make(pm, "logconf", warmup="openai")(t, y, 0.5), z)
        ev, eg = vg(lambda t, y=y: oa_logconf(t, y, 0.5), z)  # reference upcasts with .float()
        close(v, ev)
        close(g.float(), eg.float(), 1e-3)


def test_logconf_zero_head_ties_go_to_class_zero(pm):
    """Reference quirk kept: all predictions tied at the threshold -> every row hardened to class 0."""
    from w2s_harness.kernels.reference import hardened_targets

    z = torch.zeros(6, 2)
    y = torch.tensor([[0.2, 0.8]] * 6)
    h = hardened_targets(z, y)
    assert torch.equal(h, torch.tensor([[1.0, 0.0]] * 6))


# ---------------------------------------------------------------------------------- k-class logconf


@pytest.mark.parametrize("case", ("random", "hard", "ties", "zeros", "one_class", "last_class", "extreme"))
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("balance", [True, False])
def test_logconf_k_class_matches_numpy(pm, case, k, balance):
    loss = make(pm, "logconf", aux_coef=0.5, warmup_frac=0.0, balance=balance)
    for n in SIZES:
        z, y = inputs(case, n, k, F64, seed=17 * n + k)
        v, g = vg(lambda t, y=y: loss(t, y, 0.5), z)
        ev, eg = vg(lambda t, y=y: np_logconf(t, y, 0.5, balance=balance), z)
        close(v, ev)
        close(g, eg)


def test_k2_balanced_peeling_equals_reference_threshold():
    from w2s_harness.kernels.reference import hardened_targets

    for seed in range(20):
        z, y = inputs("random", 33, 2, F32, seed=seed)
        p = torch.softmax(z, -1)
        thr = torch.quantile(p[:, 0], y.mean(0)[1])
        expected = torch.stack([(p[:, 0] >= thr), (p[:, 0] < thr)], 1).float()
        assert torch.equal(hardened_targets(z, y), expected)


def test_k_class_balance_matches_weak_proportions():
    from w2s_harness.kernels.reference import hardened_targets

    g = torch.Generator().manual_seed(0)
    n, k = 400, 4
    z = torch.randn(n, k, generator=g) * 2
    props = torch.tensor([0.1, 0.2, 0.3, 0.4])
    y = F.one_hot(torch.multinomial(props, n, replacement=True, generator=g), k).float()
    counts = hardened_targets(z, y).sum(0)
    expected = y.mean(0) * n
    assert (counts - expected).abs().max() <= k
    assert counts.sum() == n
    # without balance: plain argmax
    assert torch.equal(hardened_targets(z, y, balance=False).argmax(1), torch.softmax(z, -1).argmax(1))


def test_argmax_ties_go_to_lowest_class():
    from w2s_harness.kernels.reference import hardened_targets

    h = hardened_targets(torch.zeros(2, 3), torch.full((2, 3), 1 / 3), balance=False)
    assert torch.equal(h.argmax(1), torch.tensor([0, 0]))


# ----------------------------------------------------------------------------------- logconf buffer


def ee_buffer_logconf(batches, buffer_size, coef):
    """EleutherAI/w2s log_confidence_loss(buffer=...) for k = 2, with labels as (N, 2) rows."""
    buf, out = [], []
    for z, y in batches:
        zf = z.float()
        preds = torch.softmax(zf, dim=-1)
        buf += list(preds[:, 0].detach())
        buf = buf[-buffer_size:]
        threshold = torch.quantile(torch.stack(buf), y.float().mean(0)[1])
        strong = torch.cat([(preds[:, 0] >= threshold)[:, None], (preds[:, 0] < threshold)[:, None]], 1)
        target = y.float() * (1 - coef) + strong.detach() * coef
        out.append(vg(lambda t, target=target: F.cross_entropy(t.float(), target), z))
    return out


@pytest.mark.parametrize("buffer_size", [1, 5, 24, 1000])
def test_logconf_buffer_matches_eleuther(pm, buffer_size):
    batches = [inputs("random", n, 2, F32, seed=s) for s, n in enumerate([8, 8, 3, 8, 1, 8])]
    loss = make(pm, "logconf", buffer_size=buffer_size, warmup_frac=0.0, aux_coef=0.5)
    assert loss.stateful
    expected = ee_buffer_logconf(batches, buffer_size, 0.5)
    for (z, y), (ev, eg) in zip(batches, expected):
        v, g = vg(lambda t, y=y: loss(t, y, 0.3), z)
        close(v, ev)
        close(g, eg)
    loss.reset()
    z, y = batches[0]
    close(loss(z, y, 0.3), expected[0][0])


def test_logconf_buffer_k_class_matches_numpy(pm):
    k, size = 3, 20
    batches = [inputs("random", 8, k, F64, seed=s) for s in range(4)]
    loss = make(pm, "logconf", buffer_size=size, warmup_frac=0.0)
    pool = np.zeros((0, k))
    for z, y in batches:
        pool = np.concatenate([pool, z.numpy()])[-size:]
        v, g = vg(lambda t, y=y: loss(t, y, 0.5), z)
        ev, eg = vg(lambda t, pool=pool, y=y: np_logconf(t, y, 0.5, pool=pool), z)
        close(v, ev)
        close(g, eg)


def test_buffer_needs_balance(pm):
    with pytest.raises(ConfigError, match="buffer_size"):
        make(pm, "logconf", buffer_size=8, balance=False)


def ee_log_confidence_loss(logits, labels, step, buffer, warmup_steps=100, aux_coef=0.5, buffer_size=32):
    """EleutherAI/w2s w2s/loss.py log_confidence_loss (balance_batch=False, harden=True) restated, with ``labels``
    the class-1 probabilities ``(N,)`` as there; ``buffer`` is the trainer's list, extended in place."""
    logits, labels = logits.float(), labels.float()
    prior = labels.mean() if labels.shape[0] > 1 else 0.5
    coef = aux_coef * min(1.0, step / warmup_steps) if warmup_steps > 0 else aux_coef
    preds = torch.softmax(logits, dim=-1)
    buffer += list(preds[:, 0].detach())
    buffer = buffer[-buffer_size:]
    threshold = torch.quantile(torch.stack(buffer), prior)
    target_preds = torch.cat([(preds[:, 0] >= threshold)[:, None], (preds[:, 0] < threshold)[:, None]], dim=1)
    target = torch.stack([1.0 - labels, labels], dim=1) * (1 - coef) + target_preds.detach() * coef
    return F.cross_entropy(logits, target)


@pytest.mark.parametrize("micro", [1, 4])
def test_logconf_eleuther_recipe_per_microbatch(pm, micro):
    """EleutherAI/w2s's logconf as its Trainer calls it: per micro-batch, at the optimiser step ``global_step``,
    warmup 100 steps, a rolling buffer of 32 rows; ``prior = "uniform"`` is its 0.5 for one-row micro-batches."""
    loss = make(pm, "logconf", warmup_steps=100, buffer_size=32, prior="uniform" if micro == 1 else "batch")
    total = 150
    loss.set_total_steps(total)
    buffer: list = []
    for i, step in enumerate([0, 0, 1, 30, 99, 100, 101, 149] * 3):
        z, y = inputs("random", micro, 2, F32, seed=i)
        v, g = vg(lambda t, y=y, step=step: loss(t, y, step / total), z)
        ev, eg = vg(lambda t, y=y, step=step: ee_log_confidence_loss(t, y[:, 1], step, buffer), z)
        close(v, ev, 1e-5)
        close(g, eg, 1e-5)


def test_warmup_steps_schedule_and_errors(pm):
    for name in ("logconf", "entropy"):
        loss = make(pm, name, warmup_steps=10, aux_coef=0.4)
        with pytest.raises(ConfigError, match="warmup_steps counts optimiser steps"):
            loss.coef(0.5)
        loss.set_total_steps(40)
        assert [loss.coef(s / 40) for s in (0, 5, 10, 39)] == pytest.approx([0.0, 0.2, 0.4, 0.4])
        zero = make(pm, name, warmup_steps=0, aux_coef=0.4)
        zero.set_total_steps(40)
        assert zero.coef(0.0) == 0.4
        with pytest.raises(ConfigError, match="warmup_frac or warmup_steps"):
            make(pm, name, warmup_steps=10, warmup_frac=0.2)
        with pytest.raises(ConfigError, match="does not combine with warmup='openai'"):
            make(pm, name, warmup_steps=10, warmup="openai")
    with pytest.raises(ConfigError, match="prior"):
        make(pm, "logconf", prior="weak")
    with pytest.raises(ConfigError, match="prior only sets"):
        make(pm, "logconf", prior="uniform", balance=False)


def test_logconf_uniform_prior_k_class(pm):
    """``prior = "uniform"`` is the hardening balanced to 1/k per class (the batch's own labels still the target)."""
    z, y = inputs("random", 12, 3, F64, seed=4)
    h = torch.as_tensor(np_harden(z.numpy(), np.full((12, 3), 1 / 3), True, None))
    assert h.sum(0).tolist() == [4.0, 4.0, 4.0]
    loss = make(pm, "logconf", prior="uniform", warmup_frac=0.0)
    close(loss(z, y, 0.5), ce_rows(z, y * 0.5 + h * 0.5).mean())


# ------------------------------------------------------------------------------- kl, entropy, window


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("case", CASES)
def test_kl_forward_matches_kl_div(pm, dtype, case):
    loss = make(pm, "kl")
    for n in SIZES:
        z, y = inputs(case, n, 3, dtype, seed=n)
        v, g = vg(lambda t, y=y: loss(t, y), z)
        ev, eg = vg(lambda t, y=y: ee_kl(t, y), z)
        close(v, ev)
        close(g, eg)


@pytest.mark.parametrize("dtype", [F64, F32])
def test_kl_reverse(pm, dtype):
    eps = 1e-4
    loss = make(pm, "kl", direction="reverse", eps=eps)
    for case in ("random", "hard", "extreme"):
        z, y = inputs(case, 7, 3, dtype, seed=2)
        ys = (y + eps) / (1 + 3 * eps)

        def expected(t, ys=ys):
            p = torch.softmax(t, -1)
            return (p * (torch.log_softmax(t, -1) - torch.log(ys))).sum(-1).mean()

        v, g = vg(lambda t, y=y: loss(t, y), z)
        ev, eg = vg(expected, z)
        close(v, ev)
        close(g, eg)


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("warmup", ["linear", "openai"])
def test_entropy_matches_formula(pm, dtype, case, warmup):
    loss = make(pm, "entropy", aux_coef=0.6, warmup_frac=0.2, warmup=warmup)
    for n in FEW_SIZES:
        z, y = inputs(case, n, 3, dtype, seed=n)
        for step_frac in (0.1, 0.5):
            c = linear_coef(step_frac, 0.6, 0.2) if warmup == "linear" else oa_coef(step_frac, 0.6, 0.2)

            def expected(t, c=c, y=y):
                p = torch.softmax(t, -1)
                ent = -(p * torch.log(p.clamp_min(torch.finfo(t.dtype).tiny))).sum(-1)
                return ((1 - c) * ce_rows(t, y) + c * ent).mean()

            v, g = vg(lambda t, step_frac=step_frac, y=y: loss(t, y, step_frac), z)
            ev, eg = vg(expected, z)
            close(v, ev)
            close(g, eg)


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("mode", ["drop", "weight"])
def test_window_weak(pm, dtype, mode):
    radius = 0.2
    loss = make(pm, "window", radius=radius, mode=mode)
    for case in ("random", "hard", "extreme", "zeros"):
        for n in SIZES:
            z, y = inputs(case, n, 2, dtype, seed=n)
            dist = (y[:, 1] - 0.5).abs()  # k = 2: distance of the weak label from 0.5
            w = (dist >= radius).to(dtype) if mode == "drop" else torch.clamp(dist / radius, max=1.0)
            v, g = vg(lambda t, y=y: loss(t, y), z)
            ev, eg = vg(lambda t, n=n, w=w, y=y: (w * ce_rows(t, y)).sum() / n, z)
            close(v, ev)
            close(g, eg)


@pytest.mark.parametrize("dtype", [F64, F32])
def test_window_strong_matches_eleuther(pm, dtype):
    loss = make(pm, "window", on="strong", radius=0.15)
    for case in ("random", "hard", "zeros", "extreme"):
        for n in SIZES:
            z, y = inputs(case, n, 2, dtype, seed=n + 1)
            z = z / 4 if case == "random" else z  # keep some rows inside the window
            v, g = vg(lambda t, y=y: loss(t, y), z)
            ev, eg = vg(lambda t, y=y: ee_window_strong(t, y, 0.15), z)
            close(v, ev)
            close(g, eg)


def test_window_all_dropped_is_zero_not_nan(pm):
    y = torch.full((4, 2), 0.5)
    v, g = vg(lambda t: make(pm, "window")(t, y), torch.randn(4, 2))
    assert v.item() == 0.0 and torch.equal(g, torch.zeros(4, 2))


def test_window_k_class_uses_top2_margin(pm):
    y = torch.tensor([[0.5, 0.4, 0.1], [0.8, 0.1, 0.1]])
    w = make(pm, "window", radius=0.15).weights(torch.zeros(2, 3), y)
    assert torch.equal(w, torch.tensor([0.0, 1.0]))  # margins 0.05 and 0.35


# --------------------------------------------------------------------------------------- NaN policy


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [F64, F32, torch.float16, torch.bfloat16])
def test_no_nan_reaches_the_optimiser(pm, name, dtype):
    loss = make(pm, name)
    for case in ("random", "hard", "zeros", "one_class", "extreme"):
        for n in (1, 5):
            for k in (2, 3):
                z, y = inputs(case, n, k, dtype, seed=n + k)
                v, g = vg(lambda t, y=y: loss(t, y, 0.5), z)
                assert torch.isfinite(v), (case, n, k)
                assert torch.isfinite(g).all(), (case, n, k)


# ---------------------------------------------------------------------------------------- backends


@pytest.mark.parametrize("name", NAMES)
def test_backend_torch_equals_auto_on_cpu(pm, name):
    z, y = inputs("random", 6, 2, F32)
    close(make(pm, name, backend="torch")(z, y, 0.5), make(pm, name)(z, y, 0.5), 0)


def test_backend_triton_on_cpu_tensor_is_refused(pm, monkeypatch):
    """Without the interpreter a CPU tensor cannot take the kernel. The variable is removed for this test only
    (under ``TRITON_INTERPRET=1`` the kernel would run instead), so it never depends on test order."""
    from w2s_harness.kernels.dispatch import KernelUnavailableError

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    z, y = inputs("random", 6, 2, F32)
    with pytest.raises(KernelUnavailableError):
        make(pm, "xent", backend="triton")(z, y)


def test_backend_config_errors(pm):
    with pytest.raises(ConfigError, match="backend"):
        make(pm, "xent", backend="cuda")
    for name in ("entropy", "window"):
        with pytest.raises(ConfigError, match="no fused Triton kernel"):
            make(pm, name, backend="triton")
    with pytest.raises(ConfigError, match="no fused Triton kernel"):
        make(pm, "kl", direction="reverse", backend="triton")


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("logconf", {"warmup": "cosine"}, "warmup"),
        ("logconf", {"aux_coef": 1.5}, "aux_coef"),
        ("logconf", {"buffer_size": -1}, "buffer_size"),
        ("logconf", {"balance": "yes"}, "balance"),
        ("product", {"alpha": -1.0}, "alpha"),
        ("product", {"beta": float("nan")}, "beta"),
        ("window", {"radius": 0.0}, "radius"),
        ("window", {"on": "strong", "mode": "weight"}, "mode"),
        ("kl", {"direction": "backward"}, "direction"),
    ],
)
def test_param_validation(pm, name, params, match):
    with pytest.raises(ConfigError, match=match):
        make(pm, name, **params)


# -------------------------------------------------------------------------------------- input errors


def _err(pm, logits, targets, name="xent", step_frac=0.0) -> str:
    with pytest.raises(InputError) as info:
        make(pm, name)(logits, targets, step_frac)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_error_k_mismatch_names_shapes(pm):
    msg = _err(pm, torch.zeros(8, 2), torch.full((8, 3), 1 / 3))
    assert (
        "targets shape (8, 3) does not match logits shape (8, 2): pass one soft-label row of k=2 "
        "probabilities per example"
    ) in msg


def test_error_batch_mismatch(pm):
    msg = _err(pm, torch.zeros(8, 2), torch.full((7, 2), 0.5))
    assert "(7, 2)" in msg and "(8, 2)" in msg
    msg = _err(pm, torch.zeros(8, 2), torch.zeros(7, dtype=torch.long))
    assert "(7,)" in msg and "(8, 2)" in msg


def test_error_not_summing_to_one(pm):
    y = torch.full((4, 2), 0.5)
    y[2] = torch.tensor([0.7, 0.6])
    msg = _err(pm, torch.zeros(4, 2), y, name="logconf")
    assert "(4, 2)" in msg and "row 2" in msg and "1.3" in msg


def test_error_negative_probability(pm):
    y = torch.tensor([[1.2, -0.2], [0.5, 0.5]])
    msg = _err(pm, torch.zeros(2, 2), y, name="product")
    assert "(2, 2)" in msg and "negative" in msg


def test_error_class_id_out_of_range(pm):
    msg = _err(pm, torch.zeros(3, 2), torch.tensor([0, 2, 1]))
    assert "class id 2" in msg and "(3, 2)" in msg
    assert "class id -1" in _err(pm, torch.zeros(3, 2), torch.tensor([0, -1, 1]))


@pytest.mark.parametrize(
    "logits,targets,needle",
    [
        (torch.zeros(8), torch.zeros(8, dtype=torch.long), "logits shape (8,)"),
        (torch.zeros(2, 4, 2), torch.zeros(2, dtype=torch.long), "logits shape (2, 4, 2)"),
        (torch.zeros(4, 1), torch.ones(4, 1), "k=1"),
        (torch.zeros(0, 2), torch.zeros(0, 2), "empty batch"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, dtype=torch.long), "floating point"),
        (torch.zeros(3, 2), torch.full((3,), 0.5), "targets shape (3,) are floats"),
        (torch.zeros(3, 2), torch.full((3, 2, 1), 0.5), "targets shape (3, 2, 1)"),
        (torch.zeros(2, 2), torch.tensor([[float("nan"), 1.0], [0.5, 0.5]]), "NaN"),
    ],
)
def test_error_bad_inputs(pm, logits, targets, needle):
    assert needle in _err(pm, logits, targets)


def test_error_step_frac(pm):
    z, y = torch.zeros(2, 2), torch.full((2, 2), 0.5)
    assert "step_frac" in _err(pm, z, y, name="logconf", step_frac=1.5)
    assert "step_frac" in _err(pm, z, y, name="logconf", step_frac=float("nan"))


def test_low_precision_targets_tolerance(pm):
    y = torch.softmax(torch.randn(64, 5), -1).to(torch.bfloat16)
    make(pm, "xent")(torch.randn(64, 5), y)  # bf16 rounding of a valid softmax row is accepted


def test_targets_get_no_gradient(pm):
    z = torch.randn(5, 2, requires_grad=True)
    y = torch.softmax(torch.randn(5, 2), -1).requires_grad_(True)
    for name in NAMES:
        v = make(pm, name)(z, y, 0.5)
        (gy,) = torch.autograd.grad(v, y, allow_unused=True)
        assert gy is None or torch.count_nonzero(gy) == 0


# ------------------------------------------------------------- validate=False: checked once, not per step (issue 25)


def _value_and_grad(loss, z, y, **kw):
    zz = z.detach().clone().requires_grad_()
    v = loss(zz, y, 0.5, **kw)
    v.backward()
    return v.detach(), zz.grad


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ids", [False, True], ids=["soft", "class-ids"])
def test_validate_false_gives_the_checked_value_and_gradient(pm, name, ids):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(24, 3, generator=g) * 2
    y = torch.randint(0, 3, (24,), generator=g) if ids else torch.softmax(torch.randn(24, 3, generator=g), -1)
    v, grad = _value_and_grad(make(pm, name), z, y)
    v_fast, grad_fast = _value_and_grad(make(pm, name), z, y, validate=False)
    assert torch.equal(v, v_fast) and torch.equal(grad, grad_fast), name
    ref = F.cross_entropy(z, y)  # a real number, not only self-consistency
    if name == "xent":
        torch.testing.assert_close(v_fast, ref)


def test_validate_false_reads_no_target_values(monkeypatch):
    """The checked call reads the targets back once (``.tolist()``, a device sync on a GPU) and copies them to
    float64; ``validate=False`` does neither, for soft labels and for class ids."""
    from torch.utils._python_dispatch import TorchDispatchMode

    reads: list = []
    for method in ("tolist", "item", "cpu", "numpy"):
        orig = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method,
                            lambda self, *a, _o=orig, _m=method, **k: (reads.append(_m), _o(self, *a, **k))[1])

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names, self.f64 = [], 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.names.append(func.overloadpacket.__name__)
            self.f64 += isinstance(out, torch.Tensor) and out.dtype == torch.float64
            return out

    loss = create_plugin_manager(entry_points=False).create("loss", "xent")
    z = torch.zeros(6, 2)
    for y in (torch.full((6, 2), 0.5), torch.tensor([0, 1, 1, 0, 1, 0])):
        reads.clear()
        with Ops() as checked:
            loss(z, y)
        assert reads == ["tolist"], reads
        assert checked.f64 > 0 or y.dtype == torch.long, checked.names
        reads.clear()
        with Ops() as fast:
            loss(z, y, validate=False)
        assert reads == [] and fast.f64 == 0, (reads, fast.names)
        assert not {"_local_scalar_dense", "min", "max"} & set(fast.names), fast.names


def test_validate_false_keeps_the_shape_checks_and_skips_the_value_checks(pm):
    loss = make(pm, "xent")
    with pytest.raises(InputError, match=r"targets shape \(8, 3\) does not match logits shape \(8, 2\)"):
        loss(torch.zeros(8, 2), torch.full((8, 3), 1 / 3), validate=False)
    with pytest.raises(InputError, match="logits shape"):
        loss(torch.zeros(8), torch.zeros(8, dtype=torch.long), validate=False)
    bad = torch.tensor([[1.2, -0.2], [0.5, 0.5]])
    with pytest.raises(InputError, match="negative probability"):
        loss(torch.zeros(2, 2), bad)
    # unchecked: the caller promised valid targets, so the value is computed as given (-(y . log 0.5) = log 2)
    v = loss(torch.zeros(2, 2), bad, validate=False)
    torch.testing.assert_close(v, torch.tensor(float(np.log(2.0))))
    # the one-off table check is where such a table is caught, with the usual one-line message
    with pytest.raises(InputError, match=r"targets shape \(2, 2\) contain a negative probability"):
        loss.prevalidate(bad, 2)
