"""Kernel tests: fused Triton losses vs ``w2s_harness.kernels.reference``.

Where they run:

* a CUDA GPU and triton: on the GPU, compiled (nothing here changes);
* no CUDA GPU: through the Triton interpreter on CPU tensors. ``TRITON_INTERPRET=1`` is set for each test
  of this folder only (the autouse ``_triton_interpreter`` fixture, through ``monkeypatch``, so it is
  restored afterwards and tests elsewhere in the same session, such as the ``backend="triton"`` refusal in
  ``tests/test_losses.py``, see the process environment unchanged). ``triton.jit`` reads the variable when
  a function is *defined*: for the kernel modules that happens inside the tests (they are imported lazily),
  and for triton's own jit helpers (``tl.sum``, ``tl.max``, ...) when triton is first imported, so this
  conftest imports triton at collection with the variable set for the duration of that import only.
  ``kernels.dispatch`` reads it at call time. A variable already set by the caller (``tox -e kernels`` sets
  ``TRITON_INTERPRET=1``; ``TRITON_INTERPRET=0`` opts out) is left alone;
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

_ENV = os.environ.get("TRITON_INTERPRET")
#: The kernel tests run under the interpreter: asked for explicitly, or by default when there is no CUDA GPU.
INTERPRET = _ENV == "1" or (_ENV is None and not torch.cuda.is_available())
DEVICE = "cpu" if INTERPRET or not torch.cuda.is_available() else "cuda"


def _import_triton_interpreted() -> str | None:
    """Import triton with ``TRITON_INTERPRET=1`` set for this import only, so that its own jit helpers are
    interpreted functions; a skip reason when triton had already been imported without it."""
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.language as tl
    except Exception as exc:  # noqa: BLE001 - a broken install: skip the folder with the reason
        return f"triton fails to import: {exc!r}"
    finally:
        if before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = before
    if type(tl.sum).__name__ != "InterpretedFunction":
        return ("triton was imported before TRITON_INTERPRET=1 was set (its own jit helpers, such as tl.sum, "
                "are compiled-only); run `tox -e kernels`")
    return None


_SKIP_REASON = None
if not HAS_TRITON:
    _SKIP_REASON = "triton is not installed: pip install -e '.[kernels]' (tox -e kernels does it)"
elif not INTERPRET and not torch.cuda.is_available():
    _SKIP_REASON = "no CUDA GPU and TRITON_INTERPRET is not 1"
elif INTERPRET:
    _SKIP_REASON = _import_triton_interpreted()


def _compiled_kernels_imported() -> str | None:
    """A kernel module imported *without* the interpreter (its jit functions would compile for a GPU)."""
    for name, mod in list(sys.modules.items()):
        if not name.startswith("w2s_harness.kernels.triton_") or mod is None:
            continue
        if any(type(v).__name__ == "JITFunction" for v in vars(mod).values()):
            return name
    return None


def pytest_collection_modifyitems(config, items):
    if _SKIP_REASON is None:
        return
    skip = pytest.mark.skip(reason=_SKIP_REASON)
    for item in items:
        path = Path(str(item.path)).resolve()
        if HERE in path.parents and getattr(item.module, "NEEDS_TRITON", True):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _triton_interpreter(request, monkeypatch):
    """``TRITON_INTERPRET=1`` for this test only (restored afterwards), when the kernels run interpreted."""
    if not INTERPRET:
        yield
        return
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if getattr(request.module, "NEEDS_TRITON", True) and (name := _compiled_kernels_imported()):
        # Something outside this folder imported the kernels before any kernel test ran, without the
        # interpreter: they were defined as compiled kernels and cannot run on CPU tensors.
        pytest.skip(f"{name} was imported before TRITON_INTERPRET=1 was set; run `tox -e kernels`")
    yield


def pytest_report_header(config):
    where = "Triton interpreter on CPU (TRITON_INTERPRET=1)" if INTERPRET else f"device {DEVICE}"
    return f"w2s kernels: {where}; triton {'installed' if HAS_TRITON else 'NOT installed'}"


@pytest.fixture
def device() -> str:
    return DEVICE
