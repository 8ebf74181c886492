"""Utilities for plugin authors: hub access that fails fast offline, and file digests with a shared cache.

These are the helpers the built-in dataset and model plugins use to load from the Hugging Face hub or local
files; a third-party plugin that loads the same way uses them too. Importing this module is cheap (no torch).

* :func:`hub_endpoint`, :func:`hub_reachable`: the hub's URL (``HF_ENDPOINT``) and one quick TCP probe of it (or
  of the proxy that applies), memoised per process, so an offline run fails in seconds with a one-line error
  instead of retrying inside ``datasets`` / ``transformers``.
* :func:`file_sha256`, :func:`file_sha256s`: a file's sha256; the plural form keeps a cache under
  :func:`user_cache_dir` keyed by path, size and modification time (like make and rsync), so a multi-GB checkpoint
  is hashed once, not on every run.
* :func:`user_cache_dir`: the harness's per-user cache folder (``W2S_HARNESS_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/w2s-harness``, else ``~/.cache/w2s-harness``).
"""

from __future__ import annotations

from ._data.filehash import file_sha256, file_sha256s, user_cache_dir
from ._data.hub import hub_endpoint, hub_reachable

__all__ = ["file_sha256", "file_sha256s", "hub_endpoint", "hub_reachable", "user_cache_dir"]
