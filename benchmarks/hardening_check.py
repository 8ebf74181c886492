"""On a GPU: do the fused kernels harden the same rows as ``backend="torch"``, and where not, how close to the
threshold are the rows that flip?

``python benchmarks/hardening_check.py [--n 1048576] [--json FILE]`` (CUDA only; run by
``benchmarks/gpu_check.sh``). The fused balanced logconf at k = 2 computes ``p0 = softmax(z)[:, 0]`` in the
kernel (the GPU's ``exp`` and division may differ from torch's by an ulp) and selects the threshold over
those values; the reference takes ``torch.quantile`` over torch's ``p0``. With ``coef = 1`` the fused
gradient is ``(p - h) / N``, which gives the fused ``h`` exactly. For each case (fp32 and bf16 logits,
random / tied / saturated logits, the batch and a rolling-buffer pool, k = 3 peeling) the script reports
the rows whose class differs from the reference, the thresholds of both, and each flipped row's distance
to the reference threshold in float32 ulps. Exit 1 if a row flips more than ``--max-ulps`` (default 4)
from the threshold, or the k = 3 ids (torch scores, device selects: bit-identical by construction) differ.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def _cases(n: int, g: torch.Generator):
    z = torch.randn(n, 2, generator=g, device="cuda") * 2
    y = torch.softmax(torch.randn(n, 2, generator=g, device="cuda"), dim=-1)
    yield "random fp32", z, y, None
    yield "random bf16", z.to(torch.bfloat16), y, None
    tied = (z * 4).round() / 4  # many rows share p0: ties at the threshold
    yield "ties fp32", tied, y, None
    yield "saturated fp32", z * 40, y, None  # p0 close to 0 and 1, where exp's rounding matters most
    pool = torch.randn(4 * n, 2, generator=g, device="cuda") * 2
    yield "pool fp32", z, y, torch.cat([pool, z])


def _fused_h(z, y, pool):
    from w2s_harness.kernels import triton_ops

    zz = z.detach().clone().requires_grad_()
    triton_ops.logconf_loss(zz, y, coef=1.0, pool=pool).backward()
    p = torch.softmax(z.float(), dim=-1)
    return (p - zz.grad.float() * z.shape[0]).round()[:, 0]  # 1 where the row was hardened to class 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--max-ulps", type=int, default=4)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("hardening_check: needs a CUDA GPU", file=sys.stderr)
        return 2
    from w2s_harness.kernels import reference
    from w2s_harness.kernels.triton_threshold import balanced_ids, balanced_threshold

    g = torch.Generator(device="cuda").manual_seed(0)
    results, bad = [], False
    for name, z, y, pool in _cases(a.n, g):
        h_fused = _fused_h(z, y, pool)
        h_ref = reference.hardened_targets(z, y, balance=True, pool=pool)[:, 0]
        src = z if pool is None else pool
        p0 = torch.softmax(z.float(), dim=-1)[:, 0]
        thr_ref = torch.quantile(torch.softmax(src.float(), dim=-1)[:, 0], y.float().mean(0)[1].clamp(0, 1))
        thr_fused = balanced_threshold(z, y, pool=pool)
        flipped = (h_fused != h_ref).nonzero().flatten()
        ulp = torch.finfo(torch.float32).eps * thr_ref.abs().clamp_min(torch.finfo(torch.float32).tiny)
        dist = ((p0[flipped] - thr_ref).abs() / ulp).tolist()
        worst = max(dist, default=0.0)
        bad |= worst > a.max_ulps
        results.append({"case": name, "rows": a.n, "flipped": len(dist), "max_ulps_from_threshold": worst,
                        "threshold_ref": float(thr_ref), "threshold_fused": float(thr_fused),
                        "threshold_ulps_apart": float((thr_fused.float() - thr_ref).abs() / ulp)})
        print(json.dumps(results[-1]), flush=True)
    z = torch.randn(a.n // 8, 3, generator=g, device="cuda") * 2
    y = torch.softmax(torch.randn(a.n // 8, 3, generator=g, device="cuda"), dim=-1)
    same = torch.equal(balanced_ids(z, y), reference.hardened_targets(z, y, balance=True).argmax(dim=-1))
    bad |= not same
    results.append({"case": "k=3 peeling", "rows": a.n // 8, "ids_identical": same})
    print(json.dumps(results[-1]), flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
