"""Device facts for the benchmark suites (imported by ``conftest.py`` and the benchmark modules).

On a CUDA GPU with triton everything runs (fused Triton kernels, eager PyTorch reference, ``torch.compile`` of
the reference, Liger-Kernel where installed) with peak memory and achieved bandwidth. On a CPU only the
reference paths run, at reduced sizes (the Triton interpreter is a correctness tool, its timings mean nothing);
``torch.compile`` on CPU is opt-in (``W2S_BENCH_COMPILE=1``: the inductor C++ build takes minutes per shape).
"""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass, field

import torch

# Peak HBM bandwidth (GB/s) and dense bf16 tensor-core TFLOP/s by device name (datasheet numbers).
_PEAKS = [
    ("H200", 4800.0, 989.0),
    ("H100 PCIe", 2039.0, 756.0),
    ("H100", 3352.0, 989.0),  # SXM / HBM3
    ("A100-SXM4-80GB", 2039.0, 312.0),
    ("A100 80GB PCIe", 1935.0, 312.0),
    ("A100", 1555.0, 312.0),
    ("L40S", 864.0, 362.0),
    ("A10G", 600.0, 125.0),
]


@dataclass
class BenchEnv:
    gpu: bool
    device: str
    device_name: str
    peak_gbps: float | None
    peak_tflops: float | None
    compile_ok: bool
    compile_reason: str
    liger: bool
    versions: dict = field(default_factory=dict)

    def sync(self):
        if self.gpu:
            torch.cuda.synchronize()


def _make_env() -> BenchEnv:
    has_triton = importlib.util.find_spec("triton") is not None
    gpu = torch.cuda.is_available() and has_triton and os.environ.get("TRITON_INTERPRET") != "1"
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    if has_triton:
        import triton

        versions["triton"] = triton.__version__
    liger = importlib.util.find_spec("liger_kernel") is not None
    if liger:
        from importlib.metadata import version

        versions["liger_kernel"] = version("liger-kernel")
    if gpu:
        name = torch.cuda.get_device_name()
        peak_bw = peak_tf = None
        for key, bw, tf in _PEAKS:
            if key.lower() in name.lower():
                peak_bw, peak_tf = bw, tf
                break
        peak_bw = float(os.environ.get("W2S_PEAK_GBPS", peak_bw or 0)) or None
        return BenchEnv(True, "cuda", name, peak_bw, peak_tf, True, "", liger, versions)
    # CPU: the kernel suite runs with W2S_BENCH_THREADS intra-op threads (default 1: on a small shared machine
    # OpenMP spinning makes multi-threaded timings of these small ops noisy and slower). Applied by a fixture
    # in test_bench_kernels.py only, so other suites keep torch's default.
    versions["cpu_threads"] = CPU_THREADS
    want = os.environ.get("W2S_BENCH_COMPILE") == "1"
    reason = "" if want else "torch.compile on CPU is opt-in (W2S_BENCH_COMPILE=1): inductor's C++ build takes minutes"
    return BenchEnv(False, "cpu", platform.processor() or platform.machine(), None, None, want, reason, liger,
                    versions)


CPU_THREADS = int(os.environ.get("W2S_BENCH_THREADS", "1"))
ENV = _make_env()
