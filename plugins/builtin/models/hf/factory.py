"""The registered ``hf:`` factory."""

from __future__ import annotations

import inspect
from typing import Any

from w2s_harness import check_bool

from .model import HFFeatureModel, HFFineTuneModel, HFModel


def hf_model(target: str, **params: Any) -> HFModel:
    """The ``hf:`` factory: an :class:`HFFeatureModel` for ``linear_probe = true`` (default), else an
    :class:`HFFineTuneModel`. Parameters as :class:`HFModel` (its signature is this factory's, below)."""
    linear_probe = check_bool(params.get("linear_probe", True), "linear_probe", owner=f"model 'hf:{target}'")
    return (HFFeatureModel if linear_probe else HFFineTuneModel)(target, **params)


# The registry checks config keys against the factory's signature: expose HFModel's (less ``self``).
_init = inspect.signature(HFModel.__init__)
hf_model.__signature__ = _init.replace(parameters=list(_init.parameters.values())[1:])
