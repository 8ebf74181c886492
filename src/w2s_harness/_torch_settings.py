"""Process-wide torch settings a run changes, restored when it ends (the caller's process is left as it was)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_settings(threads: int = 0) -> Iterator[None]:
    """Within the block: ``threads`` intra-op threads (0 = leave torch's setting alone); the previous count is
    restored on exit. torch is imported only when a count is set. (Denormal flushing, the other setting a run
    touches, is switched on and back off by the CPU head loop itself: ``_training.cpu_head_mode``.)"""
    if not threads:
        yield
        return
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(prev)
