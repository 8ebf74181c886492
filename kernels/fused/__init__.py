"""Loss kernels: PyTorch references (``reference``), fused Triton kernels (``triton_*``), and ``dispatch``.

Importing this package is cheap; torch/triton load when a function is first used.
"""
