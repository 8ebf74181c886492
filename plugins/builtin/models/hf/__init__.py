"""``hf:<checkpoint>``: a Hugging Face transformers model (encoder or causal LM) + a zero-initialised linear head.

``hf:/path/to/checkpoint`` loads a local directory; ``hf:org/name`` a hub id; ``hf:/path/to/model.gguf`` (or a
directory plus ``gguf_file``) a GGUF checkpoint. One checkpoint gives a family of model sizes: ``layers=N``
truncates the model to its first N layers (``hidden_states[N]``), so a ladder L1 < L3 < L6 comes from one set of
weights.

* ``linear_probe=True`` (default): the backbone is frozen. :meth:`HFFeatureModel.features` runs ONE forward pass
  with ``output_hidden_states=True`` (length-sorted batches, ``torch.inference_mode``) and returns the pooled
  features of EVERY layer, each under the key a model truncated at that layer would have, so the feature cache
  serves a whole ladder from one pass.
* ``linear_probe=False``: :meth:`HFFineTuneModel.classifier` returns ``HFClassifier``, which tokenizes a list of
  strings and returns logits from the (truncated) backbone + a zero-initialised head. Everything is fine-tuned,
  or only LoRA adapters (``lora=True``, through ``peft``) and the head. ``sequence_classification=True`` uses
  ``AutoModelForSequenceClassification``'s own head instead.

Causal LMs (GPT-2, Llama, Qwen2, Pythia, ...; detected from the config) pool the hidden state of the LAST REAL
token by default: the last position whose attention mask is 1, which is right for left and right padding alike
(the reference's ``input_ids != 0`` rule picks the wrong token for a text containing token 0, GPT-2's ``!``).
Position ids follow the attention mask, so a left-padded text gets the positions it has unpadded. A tokenizer
without a pad token pads with its eos token (else bos, unk, or token 0; padded positions are masked out anyway).
Their fine-tuning head is the reference's: a bias-free linear layer, zero-initialised; the backbone's dropout is off
while training (the reference's ``train_with_dropout=False``).

Micro-batches (``minibatch_size`` < ``batch_size``): the training loop's loss stays ONE loss over the whole batch
(as the reference, which stacks the logits of its minibatches before the loss), while each micro-batch is run
forward under :func:`torch.utils.checkpoint.checkpoint` and recomputed one at a time in the backward pass, so only
one micro-batch's activations are alive at once. The gradient is the big batch's (up to float rounding). With
``grad_accumulation = true`` the training loop instead calls the loss on every micro-batch and accumulates the
gradients (Hugging Face's Trainer, as EleutherAI/w2s: ``per_device_train_batch_size = 1``,
``gradient_accumulation_steps = 32``): the same gradient for a per-row loss such as ``xent``, while a loss that
looks at the batch (``logconf``'s balancing threshold) sees one micro-batch, plus its rolling buffer, at a time.

Resolving and hashing checkpoints: :mod:`.checkpoints`. What differs per architecture (block path, pooling, head
bias, position ids, dropout) is one row per ``model_type`` in :data:`.architectures.ARCHITECTURES`.

Modules: :mod:`.checkpoints` (resolution, content hash, ``from_pretrained``), :mod:`.architectures` (the
architecture table and the block surgery: truncation, gradient checkpointing), :mod:`.tensors` (padding, position
ids, pooling, dtype, the zero head), :mod:`.lora`, :mod:`.classifier` (``HFClassifier``), :mod:`.model` (the two
model kinds), :mod:`.factory` (``hf_model``) and :mod:`.scorer` (``CausalLMScorer``: class log-probabilities from
a causal LM's own head, for prompting). This package re-exports their public names.
"""

from .architectures import (
    ARCHITECTURES,
    POOLINGS,
    Architecture,
    architecture,
    checkpoint_blocks,
    find_blocks,
    is_causal_lm,
    truncate,
    uses_mask_positions,
)
from .checkpoints import OFFLINE_ASSETS, Checkpoint, OfflineAsset, dir_fingerprint, resolve_checkpoint
from .classifier import classifier_class
from .factory import hf_model
from .lora import LORA_ALPHA, LORA_DROPOUT, LORA_R, add_lora, default_lora_targets
from .model import (
    DTYPES,
    FINETUNE_LR,
    FINETUNE_ONLY,
    PROBE_C,
    PROBE_LR,
    TOKENIZER_MAX,
    HFFeatureModel,
    HFFineTuneModel,
    HFModel,
)
from .scorer import (
    DEFAULT_TEMPLATE,
    DEMO_SEPARATOR,
    CausalLMScorer,
    check_template,
    check_verbalisers,
    default_verbalisers,
    render_prompt,
)
from .tensors import ensure_pad_token, pool, position_ids, weights_dtype, zero_head

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_TEMPLATE",
    "DEMO_SEPARATOR",
    "DTYPES",
    "FINETUNE_LR",
    "FINETUNE_ONLY",
    "LORA_ALPHA",
    "LORA_DROPOUT",
    "LORA_R",
    "OFFLINE_ASSETS",
    "POOLINGS",
    "PROBE_C",
    "PROBE_LR",
    "TOKENIZER_MAX",
    "Architecture",
    "CausalLMScorer",
    "Checkpoint",
    "HFFeatureModel",
    "HFFineTuneModel",
    "HFModel",
    "OfflineAsset",
    "add_lora",
    "architecture",
    "check_template",
    "check_verbalisers",
    "checkpoint_blocks",
    "classifier_class",
    "default_lora_targets",
    "default_verbalisers",
    "dir_fingerprint",
    "ensure_pad_token",
    "find_blocks",
    "hf_model",
    "is_causal_lm",
    "pool",
    "position_ids",
    "render_prompt",
    "resolve_checkpoint",
    "truncate",
    "uses_mask_positions",
    "weights_dtype",
    "zero_head",
]
