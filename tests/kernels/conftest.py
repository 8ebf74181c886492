"""Kernel tests: fused Triton losses vs ``w2s_harness.kernels.reference``.

Where they run:

* a CUDA GPU and triton: on the GPU, compiled (nothing here changes);
* no CUDA GPU: through the Triton interpreter on CPU tensors. ``TRITON_INTERPRET=1`` is set here, at
  conftest import, i.e. before any kernel module is imported (``triton.jit`` reads it when a kernel is
  defined, and the kernel modules are only imported lazily by the tests);
* triton not installed: every test that needs it is skipped with one clear reason (the dispatch-error
  tests, which simulate a missing triton, still run). Install the extra: ``pip install -e '.[kernels]'``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
HAS_TRITON = importlib.util.find_spec("triton") is not None

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRET or not torch.cuda.is_available() else "cuda"

_SKIP_REASON = None
if not HAS_TRITON:
    _SKIP_REASON = "triton is not installed: pip install -e '.[kernels]' (tox -e kernels does it)"
elif not INTERPRET and not torch.cuda.is_available():
    _SKIP_REASON = "no CUDA GPU and TRITON_INTERPRET is not 1"
elif (
    INTERPRET
    and "w2s_harness.kernels.triton_softce" in sys.modules
    and type(sys.modules["w2s_harness.kernels.triton_softce"]._rows_kernel).__name__ != "InterpretedFunction"
):
    # Someone imported the kernels before TRITON_INTERPRET was set: they would try to compile for a GPU.
    _SKIP_REASON = "kernel modules were imported before TRITON_INTERPRET=1 was set; run `tox -e kernels`"


def pytest_collection_modifyitems(config, items):
    if _SKIP_REASON is None:
        return
    skip = pytest.mark.skip(reason=_SKIP_REASON)
    for item in items:
        path = Path(str(item.path)).resolve()
        if HERE in path.parents and getattr(item.module, "NEEDS_TRITON", True):
            item.add_marker(skip)


def pytest_report_header(config):
    where = "Triton interpreter on CPU (TRITON_INTERPRET=1)" if INTERPRET else f"device {DEVICE}"
    return f"w2s kernels: {where}; triton {'installed' if HAS_TRITON else 'NOT installed'}"


@pytest.fixture
def device() -> str:
    return DEVICE
