"""The GPU check's measuring steps, in order of priority, each in its own subprocess with a time budget.

``python benchmarks/gpu_check.py --out DIR [--quick] [--steps a,b]`` (``benchmarks/gpu_check.sh`` runs it after
the install). Every measurement is written to ``DIR/gpu_check.json`` as soon as it is taken (the file is
rewritten after each one), so a step cut off by its budget, or a run cut off by the machine, still leaves the
numbers taken so far; the ratio table is printed at the end from that file (``--table DIR/gpu_check.json``
prints it again). A step that cannot run here (no CUDA GPU, triton missing) is recorded as skipped with the
reason and the run goes on.

Budgets are wall-clock seconds on one H100, enforced with a subprocess timeout; ``--quick`` (the 5-minute run)
uses the quick budgets and sizes. See ``--help`` for the list.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: (name, quick budget s, full budget s, what). Order = priority: the first steps run first, so a run cut
#: short still has the most important numbers. The install (30 s) runs before, in gpu_check.sh.
STEPS = [
    ("kernel-tests", 95, 150, ("tests/kernels compiled on the GPU (TRITON_INTERPRET=0, compile check at the "
                               "quick level, not the slow tests): pass / fail / skip counts")),
    ("losses", 75, 120, ("fused vs eager vs torch.compile through the public loss (create_loss(name, "
                        "backend=...)), forward + backward, N = 2^20, k = 2, xent / product / logconf: median of "
                        "many repeats (CUDA events); the fused loss also with its default per-call checks")),
    ("linear-head", 30, 60, ("large-vocabulary head N = 16k, k = 128k, H = 4096, bf16: fused vs eager, median "
                            "time and peak memory")),
    ("train-step", 20, 30, ("one step of the linear-head AdamW loop (fit) with the fused logconf: ms per step, "
                           "and host syncs per step (traced, and counted by torch.cuda.set_sync_debug_mode)")),
    ("launch-budget", 15, 20, "the CPU-side launch / byte / sync table (no GPU needed; also runs on a CPU)"),
]
INSTALL_BUDGET = 30
GPU_STEPS = {"kernel-tests", "losses", "linear-head", "train-step"}
LOSSES = ("xent", "product", "logconf")


def budgets(quick: bool) -> dict[str, int]:
    return {name: (q if quick else f) for name, q, f, _ in STEPS}


def help_text() -> str:
    lines = ["steps, in order of priority (budget in seconds: --quick / full):",
             (f"  {'install':14s} {INSTALL_BUDGET:4d} / {INSTALL_BUDGET:4d}  pip install --no-deps -e . "
             "(gpu_check.sh only)")]
    for name, q, f, what in STEPS:
        lines.append(f"  {name:14s} {q:4d} / {f:4d}  {what}")
    quick = INSTALL_BUDGET + sum(q for _, q, _, _ in STEPS)
    full = INSTALL_BUDGET + sum(f for _, _, f, _ in STEPS)
    lines.append(f"total budget: --quick {quick} s (<= 300 s: one 5-minute call), full {full} s "
                 "(gpu_check.sh's full run adds the compile report, hardening and benchmark suite steps)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ results file


class Results:
    """The JSON file every step writes into: ``{"steps": {name: {...}}, "meta": {...}}``, rewritten whole after
    each value (atomic rename), so whatever was measured before a kill is on disk."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"steps": {}, "meta": {}}

    def update(self, step: str, **values) -> None:
        data = self.load()
        data["steps"].setdefault(step, {}).update(values)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def put(self, step: str, key: str, value) -> None:
        """``steps[step][key] = value``, merged into an existing dict value."""
        data = self.load()
        entry = data["steps"].setdefault(step, {})
        if isinstance(value, dict) and isinstance(entry.get(key), dict):
            entry[key].update(value)
        else:
            entry[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


# --------------------------------------------------------------------------------------------- the steps


def why_not_gpu() -> str | None:
    """The reason the GPU steps cannot run here, or None."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return "TRITON_INTERPRET=1: the kernels would run in the interpreter, not compiled"
    return None


def _median_ms(step, repeats: int, warmup: int = 3) -> float:
    """Median over ``repeats`` of one ``step()`` timed with CUDA events (no host wait inside the loop)."""
    import torch

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in events:
        start.record()
        step()
        end.record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in events)
    return times[len(times) // 2]


def step_kernel_tests(res: Results, quick: bool, budget: int) -> None:
    # -v: one line per test as it finishes, so a run cut off by the budget still gives its counts
    log = res.path.parent / "kernel-tests.log"
    cmd = [sys.executable, "-m", "pytest", "tests/kernels", "-v", "-m", "not slow", "-p", "no:cacheprovider",
           "--maxfail=30", "-rfs"]
    env = dict(os.environ, TRITON_INTERPRET="0")
    t0 = time.time()
    with open(log, "w") as fh:
        # its own process group: the compile check runs in a grandchild, which a timeout must stop too
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(5, budget - 5))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = "timeout"
    text = log.read_text(errors="replace")
    counts = {w.lower(): sum(1 for line in text.splitlines() if f" {w}" in line and "::" in line)
              for w in ("PASSED", "FAILED", "SKIPPED", "ERROR")}
    failed = [line.split(" ")[0] for line in text.splitlines() if " FAILED" in line and "::" in line][:20]
    res.update("kernel-tests", rc=rc, seconds=round(time.time() - t0, 1), failed_tests=failed, **counts)


def step_losses(res: Results, quick: bool, budget: int) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    import launch_budget as lb

    n, k = 1 << 20, 2
    repeats = 50 if quick else 200
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(n, k, generator=g) * 2).cuda().requires_grad_()
    y = torch.softmax(torch.randn(n, k, generator=g), dim=-1).cuda()
    res.update("losses", n=n, k=k, repeats=repeats, dtype="float32")
    impls = [("fused", "triton", False), ("eager", "torch", False), ("fused checked", "triton", True)]
    # fused and eager first for every loss, torch.compile (seconds of compilation each) last
    for name in LOSSES:
        for impl, backend, checked in impls:
            loss = lb.public_loss(name, backend)
            fn = lambda loss=loss, checked=checked: loss(z, y, 0.5, validate=checked)

            def step(fn=fn):
                z.grad = None
                fn().backward()

            res.put("losses", name, {impl: _median_ms(step, repeats)})
    for name in LOSSES:
        loss = lb.public_loss(name, "torch")
        try:
            t0 = time.time()
            compiled = torch.compile(lambda a, b, loss=loss: loss(a, b, 0.5, validate=False))

            def step(compiled=compiled):
                z.grad = None
                compiled(z, y).backward()

            step()
            torch.cuda.synchronize()
            res.put("losses", name, {"compile_seconds": round(time.time() - t0, 1)})
            res.put("losses", name, {"compile": _median_ms(step, repeats)})
        except Exception as exc:  # noqa: BLE001 - record why and keep the other numbers
            res.put("losses", name, {"compile_error": f"{type(exc).__name__}: {exc}"[:300]})


def step_linear_head(res: Results, quick: bool, budget: int) -> None:
    import torch
    from w2s_harness.kernels.linear_head import fused_linear_soft_xent, linear_head_soft_xent_reference

    n, k, h = 16384, 131072, 4096
    res.update("linear-head", n=n, k=k, hidden=h, dtype="bfloat16")
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(n, h, generator=g) * 0.5).to("cuda", torch.bfloat16).requires_grad_()
    w = (torch.randn(k, h, generator=g) * h**-0.5).to("cuda", torch.bfloat16).requires_grad_()
    y = torch.softmax(torch.randn(n, k, device="cuda") * 3, dim=-1).to(torch.bfloat16)
    for impl, fn in (("fused", fused_linear_soft_xent), ("eager", linear_head_soft_xent_reference)):
        def step(fn=fn):
            x.grad = w.grad = None
            fn(x, w, None, y).backward()

        try:
            step()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step()
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
            res.put("linear-head", impl, {"peak_mib": round(peak, 1)})
            res.put("linear-head", impl, {"ms": _median_ms(step, 5 if quick else 10, warmup=0)})
        except torch.cuda.OutOfMemoryError:
            res.put("linear-head", impl, {"error": "out of memory"})
        x.grad = w.grad = None
        torch.cuda.empty_cache()


def step_train_step(res: Results, quick: bool, budget: int) -> None:
    import warnings

    import numpy as np
    import torch

    sys.path.insert(0, str(HERE))
    import launch_budget as lb

    from w2s_harness._contracts.components import check_train_config
    from w2s_harness._engine.training import fit, zero_linear_head

    # syncs per step, traced (ops that wait, host reads from the project's code, blocking cross-device copies)
    ft = lb.trace_fit("logconf", loop="head", device="cuda", epochs=2)
    inner = [s for s in range(1, len(ft.steps)) if s != len(ft.steps) // 2]  # not step 0 nor the epoch turn
    res.update("train-step", traced_syncs_per_step=max(len(ft.steps[s].syncs) for s in inner),
               traced_loss_launches=max(ft.loss[s].launches for s in inner),
               traced_interval_syncs=sorted(set(ft.tail.syncs)))
    # time per step of a real head run: N = 2^16 rows of 256 features, batch 256 -> 256 steps
    n, d, batch = 1 << 16, 256, 256
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    t = rng.dirichlet(np.ones(2), size=n).astype(np.float32)
    cfg = check_train_config("gpu-check", lr=1e-3, epochs=1, batch_size=batch, weight_decay=0.0, warmup_frac=0.0)
    loss = lb.public_loss("logconf")
    fit(zero_linear_head(d, 2, "cuda"), x[:4 * batch], t[:4 * batch], loss, cfg, seed=0, device="cuda")  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            out = fit(zero_linear_head(d, 2, "cuda"), x, t, loss, cfg, seed=0, device="cuda")
            torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = sum(1 for w in caught if "synchroniz" in str(w.message).lower())
    res.update("train-step", n=n, d=d, batch_size=batch, steps=out["steps"],
               ms_per_step=seconds * 1e3 / out["steps"], cuda_sync_warnings=syncs,
               cuda_syncs_per_step=syncs / out["steps"])


def step_launch_budget(res: Results, quick: bool, budget: int) -> None:
    sys.path.insert(0, str(HERE))
    import launch_budget as lb

    n, k = 1 << 20, 2
    rows = {}
    for name in LOSSES:
        for impl in lb.IMPLS:
            t = lb._trace(impl, name, n, k, False)
            rows[f"{name} {impl}"] = {"launches": t.launches, "triton": len(t.triton),
                                      "mib": round(t.nbytes / 2**20, 1), "syncs": len(t.syncs)}
        res.put("launch-budget", "rows", {k_: v for k_, v in rows.items() if k_.startswith(name)})
    res.update("launch-budget", n=n, k=k)


RUNNERS = {"kernel-tests": step_kernel_tests, "losses": step_losses, "linear-head": step_linear_head,
           "train-step": step_train_step, "launch-budget": step_launch_budget}


# ------------------------------------------------------------------------------------------------ table


def table(data: dict) -> str:
    """The ratio table of whatever ``gpu_check.json`` holds (partial runs included)."""
    steps = data.get("steps", {})
    out = []
    for name, *_ in STEPS:
        s = steps.get(name, {})
        status = s.get("status", "not run")
        out.append(f"[{name}] {status}" + (f": {s['reason']}" if s.get("reason") else "")
                   + (f" ({s['seconds']} s)" if "seconds" in s else ""))
    kt = steps.get("kernel-tests", {})
    if "passed" in kt:
        out.append(f"kernel tests: {kt['passed']} passed, {kt['failed']} failed, {kt['skipped']} skipped, "
                   f"{kt['error']} errors (rc {kt.get('rc')})")
    ls = steps.get("losses", {})
    if any(name in ls for name in LOSSES):
        out.append(f"losses N={ls.get('n')} k={ls.get('k')}, fwd+bwd median ms (x = eager / impl):")
        out.append(f"  {'loss':8s} {'fused':>8s} {'checked':>8s} {'eager':>8s} {'compile':>8s} "
                   f"{'eager/fused':>11s} {'compile/fused':>13s} {'checked/fused':>13s}")
        for name in LOSSES:
            r = ls.get(name, {})

            def ms(key, r=r):
                return f"{r[key]:8.3f}" if key in r else f"{'-':>8s}"

            def ratio(a, b, width, r=r):
                return f"{r[a] / r[b]:{width}.2f}" if a in r and b in r and r[b] else f"{'-':>{width}s}"

            out.append(f"  {name:8s} {ms('fused')} {ms('fused checked')} {ms('eager')} {ms('compile')} "
                       f"{ratio('eager', 'fused', 11)} {ratio('compile', 'fused', 13)} "
                       f"{ratio('fused checked', 'fused', 13)}")
    lh = steps.get("linear-head", {})
    if "fused" in lh or "eager" in lh:
        f, e = lh.get("fused", {}), lh.get("eager", {})
        line = f"linear head N={lh.get('n')} k={lh.get('k')}: fused {f.get('ms', '-')} ms / {f.get('peak_mib', '-')} "\
               f"MiB, eager {e.get('ms', '-')} ms / {e.get('peak_mib', '-')} MiB"
        if f.get("ms") and e.get("ms"):
            line += f"; eager/fused time {e['ms'] / f['ms']:.2f}"
        if f.get("peak_mib") and e.get("peak_mib"):
            line += f", memory {e['peak_mib'] / f['peak_mib']:.2f}"
        out.append(line)
    ts = steps.get("train-step", {})
    if "traced_syncs_per_step" in ts or "ms_per_step" in ts:
        out.append(f"head-loop step (fused logconf): {ts.get('ms_per_step', '-')} ms/step, traced syncs/step "
                   f"{ts.get('traced_syncs_per_step', '-')}, loss launches {ts.get('traced_loss_launches', '-')}, "
                   f"CUDA sync warnings {ts.get('cuda_sync_warnings', '-')} over {ts.get('steps', '-')} steps")
    lbs = steps.get("launch-budget", {}).get("rows", {})
    for key, r in lbs.items():
        out.append(f"launch budget {key}: {r['launches']} launches ({r['triton']} Triton), {r['mib']} MiB, "
                   f"{r['syncs']} host syncs")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- main


def run_one(name: str, out: Path, quick: bool) -> int:
    """The subprocess side: run step ``name`` and record its status (or why it was skipped)."""
    res = Results(out / "gpu_check.json")
    reason = why_not_gpu() if name in GPU_STEPS else None
    if reason is not None:
        res.update(name, status="skipped", reason=reason)
        print(f"{name}: skipped: {reason}")
        return 0
    res.update(name, status="running")
    t0 = time.time()
    RUNNERS[name](res, quick, budgets(quick)[name])
    res.update(name, status="done", seconds=round(time.time() - t0, 1))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog=help_text(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=str(ROOT / "gpu_check_out"), help="results folder (gpu_check.json, logs)")
    p.add_argument("--quick", action="store_true", help="the 5-minute run: quick budgets and sizes")
    p.add_argument("--steps", default="", help="comma-separated subset of the steps (default: all, in order)")
    p.add_argument("--table", metavar="JSON", help="print the ratio table of an existing gpu_check.json and exit")
    p.add_argument("--one", metavar="STEP", help=argparse.SUPPRESS)  # the subprocess entry point
    a = p.parse_args(argv)
    if a.table:
        print(table(json.loads(Path(a.table).read_text())))
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.one:
        return run_one(a.one, out, a.quick)
    names = [s for s in a.steps.split(",") if s] or [name for name, *_ in STEPS]
    unknown = set(names) - set(RUNNERS)
    if unknown:
        p.error(f"unknown step(s) {', '.join(sorted(unknown))}; choose from {', '.join(RUNNERS)}")
    res = Results(out / "gpu_check.json")
    limits = budgets(a.quick)
    failures = 0
    for name in names:
        t0 = time.time()
        print(f"== {name} (budget {limits[name]} s)", flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--one", name] + \
            (["--quick"] if a.quick else [])
        with open(out / f"{name}.log", "w") as log:
            try:
                rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=limits[name],
                                    check=False).returncode
            except subprocess.TimeoutExpired:  # the numbers taken so far are in the JSON already
                res.update(name, status="timeout", seconds=round(time.time() - t0, 1))
                rc = "timeout"
        if rc not in (0, "timeout"):
            res.update(name, status="failed", rc=rc, seconds=round(time.time() - t0, 1))
        failures += rc != 0
        print(f"{name}: rc={rc} {time.time() - t0:.1f} s", flush=True)
    print(table(res.load()))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
