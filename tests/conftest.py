"""Fixtures shared by the test folders."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for a module: its tensors are tiny, and threading only adds synchronisation
    overhead (seconds per file on a busy 2-core machine). Use with ``pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
