"""Process-wide torch settings a run changes, restored when it ends (the caller's process is left as it was)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_settings(threads: int = 0) -> Iterator[None]:
    """Within the block: ``threads`` intra-op threads (0 = leave torch's setting alone). On exit the thread count is
    restored and denormal flushing, which the CPU head loop turns on for the calling thread, is turned back off
    (torch has no getter for it; off is torch's default). torch is imported only if it already was or is needed."""
    import sys

    torch = sys.modules.get("torch")
    if threads and torch is None:
        import torch
    prev = torch.get_num_threads() if torch is not None else None
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch = sys.modules.get("torch")
        if torch is not None:
            if prev is not None:
                torch.set_num_threads(prev)
            torch.set_flush_denormal(False)
