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


@pytest.fixture(autouse=True, scope="session")
def _private_hash_cache(tmp_path_factory):
    """Checkpoint content hashes are cached in the user's cache directory; tests keep theirs in a temp folder
    (subprocesses inherit it through the environment)."""
    import os

    before = os.environ.get("W2S_HARNESS_CACHE_DIR")
    os.environ["W2S_HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("w2s-cache"))
    yield
    if before is None:
        os.environ.pop("W2S_HARNESS_CACHE_DIR", None)
    else:
        os.environ["W2S_HARNESS_CACHE_DIR"] = before


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """No hub for the test (``datasets`` and ``huggingface_hub`` offline, a private ``datasets`` cache), run from
    ``tmp_path`` so relative data files land there. Use with ``pytest.mark.usefixtures("offline_hub")``."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.chdir(tmp_path)
