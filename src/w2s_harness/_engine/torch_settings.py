"""Process-wide torch settings a run changes, restored when it ends (the caller's process is left as it was)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_settings(threads: int = 0) -> Iterator[None]:
    """Within the block: ``threads`` intra-op threads (0 = leave torch's setting alone); the previous count is
    restored on exit. torch is imported only when a count is set. (Denormal flushing, the other setting a run
    touches, is switched on and restored by the CPU head loop itself: ``_training.cpu_head_mode``.)"""
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


def flush_denormal_enabled() -> bool:
    """Whether ``torch.set_flush_denormal(True)`` is in effect on this thread (torch has no getter for it).

    Probed by arithmetic: with flushing on (x86 FTZ/DAZ), a float32 denormal input reads as zero, so a product
    with it is 0; with flushing off (or unsupported, where torch cannot switch it on) the product is non-zero.
    The one-element op runs on the calling thread, whose floating-point state is the one in question."""
    import torch

    tiny = torch.tensor([1e-40], dtype=torch.float32)  # below float32's smallest normal (1.2e-38)
    return bool((tiny * 2.0).item() == 0.0)
