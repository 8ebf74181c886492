"""pytest-benchmark setup for the kernel suites: the ``env`` fixture, a results collector and a summary table.

See ``_bench_env.py`` for what runs where. The summary (printed at the end, and written as Markdown to
``$W2S_BENCH_TABLE`` if set) lists each case's median time, the ratio to eager measured in the same run,
GB/s or TFLOP/s, the fraction of the device's peak and the peak memory.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_env import ENV, BenchEnv

RESULTS: list[dict] = []


@pytest.fixture(scope="session")
def env() -> BenchEnv:
    return ENV


@pytest.fixture
def record(benchmark):
    """``record(group, impl, bytes=..., flops=..., peak_mem=...)`` after ``benchmark(...)``: fills
    ``benchmark.extra_info`` (GB/s, TFLOP/s, fraction of peak, peak memory) and the summary table."""

    def _record(group: str, impl: str, *, nbytes: int | None = None, flops: float | None = None,
                peak_mem: int | None = None, note: str = ""):
        median = benchmark.stats.stats.median
        info = benchmark.extra_info
        info.update(group=group, impl=impl, device=ENV.device_name, median_ms=median * 1e3, note=note)
        row = {"group": group, "impl": impl, "median_ms": median * 1e3, "note": note}
        if nbytes:
            gbps = nbytes / median / 1e9
            info.update(min_bytes=nbytes, gbps=gbps)
            row["gbps"] = gbps
            if ENV.peak_gbps:
                info["frac_peak_bw"] = row["frac_peak"] = gbps / ENV.peak_gbps
        if flops:
            tflops = flops / median / 1e12
            info.update(flops=flops, tflops=tflops)
            row["tflops"] = tflops
            if ENV.peak_tflops:
                info["frac_peak_flops"] = row["frac_peak"] = tflops / ENV.peak_tflops
        if peak_mem is not None:
            info["peak_mem_mb"] = row["peak_mem_mb"] = peak_mem / 2**20
        RESULTS.append(row)

    return _record


def _table() -> str:
    by_group: dict[str, dict[str, dict]] = {}
    for r in RESULTS:
        by_group.setdefault(r["group"], {})[r["impl"]] = r
    lines = [
        "| case | impl | median ms | eager / impl | GB/s | TFLOP/s | % of peak | peak MiB | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for group, impls in by_group.items():
        eager = impls.get("eager")
        for impl, r in impls.items():
            ratio = f"{eager['median_ms'] / r['median_ms']:.2f}x" if eager else ""
            gbps = f"{r['gbps']:.3g}" if "gbps" in r else ""
            tf = f"{r['tflops']:.3g}" if "tflops" in r else ""
            frac = f"{100 * r['frac_peak']:.0f}%" if "frac_peak" in r else ""
            mem = f"{r['peak_mem_mb']:.0f}" if "peak_mem_mb" in r else ""
            lines.append(f"| {group} | {impl} | {r['median_ms']:.3f} | {ratio} | {gbps} | {tf} | {frac} | {mem} | "
                         f"{r['note']} |")
    return "\n".join(lines)


def _header() -> str:
    v = ", ".join(f"{k} {val}" for k, val in ENV.versions.items())
    mode = ("GPU: fused Triton vs eager vs torch.compile" + (" vs Liger" if ENV.liger else "")
            if ENV.gpu else "CPU: reference paths only (eager" + (" + torch.compile" if ENV.compile_ok else "")
            + "), reduced sizes; the fused kernels need a CUDA GPU")
    peak = f"; peak {ENV.peak_gbps:.0f} GB/s, {ENV.peak_tflops:.0f} bf16 TFLOP/s" if ENV.peak_gbps else ""
    return f"{mode}. Device: {ENV.device_name}{peak}. {v}. Date {_dt.date.today().isoformat()}."


def pytest_report_header(config):
    return "w2s benchmarks: " + _header()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    text = _header() + "\n\n" + _table()
    terminalreporter.write_sep("=", "w2s kernel benchmarks (ratios measured in this run)")
    terminalreporter.write_line(text)
    out = os.environ.get("W2S_BENCH_TABLE")
    if out:
        with open(out, "w") as fh:
            fh.write(text + "\n")
