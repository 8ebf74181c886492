"""Compile every row-kernel variant for sm_90 (Hopper) without a GPU: Triton AST -> TTIR -> PTX -> cubin.

Run in a subprocess without ``TRITON_INTERPRET`` (the interpreter replaces ``triton.jit`` functions), by
``test_kernel_compile.py``. Prints one line per compiled variant; exits 3 when this Triton has no
``ASTSource``/``GPUTarget`` compile entry point (the test then skips).
"""

from __future__ import annotations

import sys

import triton
import triton.language as tl

try:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
except ImportError:  # pragma: no cover - other triton layouts
    sys.exit(3)

from w2s_harness.kernels import triton_softce, triton_threshold

TARGET = GPUTarget("cuda", 90, 32)
ROWS_ARGS = ["Z", "Y", "G", "LOSS", "HID", "THR", "N", "NK", "coef_hi", "coef_lo", "alpha_hi", "alpha_lo",
             "beta_hi", "beta_lo", "gs_hi", "gs_lo"]
ROWS_TYPES = ["*fp32", "*fp32", "*fp32", "*fp32", "*i32", "*fp32", "i32", "i32"] + ["fp32"] * 8


def compile_one(fn, names, types, consts) -> None:
    signature = dict(zip(names, types))
    signature.update({k: "constexpr" for k in consts})
    kernel = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=consts), target=TARGET,
                            options={"num_warps": 4})
    assert kernel.asm.get("cubin"), "no cubin produced"


def main() -> None:
    # (k, rows per program, mode: 0 xent / 1 product / 2 logconf, hardening: 0 argmax / 1 ids / 2 threshold)
    for k, block_n, mode, hard in [(2, 256, 0, 0), (2, 256, 2, 2), (8, 128, 1, 0), (3, 64, 2, 1), (1000, 4, 2, 0)]:
        consts = {"K": k, "BLOCK_N": block_n, "BLOCK_K": triton.next_power_of_2(k), "MODE": mode, "HARD": hard,
                  "ACC": tl.float32, "WRITE_GRAD": True}
        compile_one(triton_softce._rows_kernel, ROWS_ARGS, ROWS_TYPES, consts)
        print(f"rows k={k} mode={mode} hard={hard}: ok")
    compile_one(triton_threshold._prob0_kernel, ["Z", "P0", "N", "NK"], ["*fp32", "*fp32", "i32", "i32"],
                {"K": 2, "BLOCK_N": 256, "BLOCK_K": 2, "ACC": tl.float32})
    print("prob0 k=2: ok")


if __name__ == "__main__":
    main()
