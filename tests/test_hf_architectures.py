"""The ``hf:`` architecture table (``w2s_harness.plugins.models.hf.architectures``): its rows agree with the
heuristics they replaced, a row added at runtime is all a new architecture needs, an unknown type that a feature
cannot handle fails with one line naming the known types, and the code fingerprint of every ``hf:`` factory covers
every module of the package."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from w2s_harness.plugins.models import hf, presets
from w2s_harness.plugins.models.hf import ARCHITECTURES, Architecture, architecture, find_blocks, hf_model
from w2s_harness.plugins.models.hf.architectures import inferred_architecture, known_types

from w2s_harness import ConfigError
from w2s_harness._engine.codehash import CodeHasher

CPU = torch.device("cpu")
#: the encoders that got position ids following the mask before the table (``MASK_POSITION_ENCODERS``)
LEGACY_MASK_POSITION_ENCODERS = {"bert", "electra", "albert", "mobilebert", "convbert", "ernie", "megatron-bert",
                                 "nezha", "roformer"}
TEXTS = ["good movie", "bad", "a good good movie", "movie bad bad"]


def _known_to_transformers(model_type: str) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type in CONFIG_MAPPING_NAMES


def _tiny_config(model_type: str, n_layers: int = 3):
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(model_type)
    small = {"hidden_size": 16, "num_hidden_layers": n_layers, "num_attention_heads": 2, "intermediate_size": 32,
             "vocab_size": 64, "n_embd": 16, "n_layer": n_layers, "n_head": 2, "num_key_value_heads": 1,
             "head_dim": 8, "num_layers": n_layers, "d_model": 16, "ffn_dim": 32, "word_embed_proj_dim": 16,
             "embedding_size": 16, "max_position_embeddings": 64, "n_positions": 64, "rotary_dim": 4,
             "num_local_experts": 2, "num_experts": 2, "moe_intermediate_size": 8,
             "shared_expert_intermediate_size": 8, "pad_token_id": 0}
    for key, value in small.items():
        if hasattr(cfg, key):
            try:
                setattr(cfg, key, value)
            except AttributeError:  # a derived property (falcon's head_dim)
                pass
    if isinstance(getattr(cfg, "layer_types", None), list):
        cfg.layer_types = cfg.layer_types[:n_layers]
    if model_type == "gpt_neo":
        cfg.attention_types = [[["global"], n_layers]]
        cfg.attention_layers = ["global"] * n_layers
    return cfg


ROWS = sorted(ARCHITECTURES)


@pytest.mark.parametrize("model_type", ROWS)
def test_rows_agree_with_the_heuristics_they_replaced(model_type):
    """Causal or not as transformers' auto mappings say; mask positions as before (causal LMs and the BERT-style
    encoders); pooling, head bias and dropout follow ``causal`` as the code did before the table."""
    row = ARCHITECTURES[model_type]
    assert row.model_type == model_type
    assert row.mask_positions == (row.causal or model_type in LEGACY_MASK_POSITION_ENCODERS)
    assert (row.pooling, row.head_bias, row.train_dropout) == (("last", False, False) if row.causal else
                                                              ("mean", True, True))
    if _known_to_transformers(model_type):
        assert inferred_architecture({"model_type": model_type}).causal == row.causal
        if not row.causal:  # an encoder family configured as a decoder was a causal LM, and still is
            assert architecture({"model_type": model_type, "is_decoder": True}).causal is True
            assert inferred_architecture({"model_type": model_type, "is_decoder": True}).causal is True


@pytest.mark.parametrize("model_type", [t for t in ROWS if ARCHITECTURES[t].blocks is not None])
def test_block_paths_are_where_the_search_finds_the_blocks(model_type):
    """Each row's ``blocks`` holds the model's blocks, in ``AutoModel`` and under ``base_model_prefix`` in
    ``AutoModelForSequenceClassification``: the same list the search without the table finds."""
    if not _known_to_transformers(model_type):
        pytest.skip(f"transformers {__import__('transformers').__version__} has no {model_type!r}")
    from transformers import AutoModel, AutoModelForSequenceClassification

    row = ARCHITECTURES[model_type]
    cfg = _tiny_config(model_type)
    model = AutoModel.from_config(cfg)
    blocks, name = find_blocks(model, 3, row)
    assert name == row.blocks and len(blocks) == 3
    assert find_blocks(model, 3) == (blocks, name)  # the table's answer is the search's
    try:
        wrapped = AutoModelForSequenceClassification.from_config(cfg)
    except ValueError:  # no sequence-classification class for this type (codegen & co.)
        return
    blocks, name = find_blocks(wrapped, 3, row)
    assert name == f"{wrapped.base_model_prefix}.{row.blocks}" and len(blocks) == 3
    assert find_blocks(wrapped, 3) == (blocks, name)


def test_unknown_types_are_inferred_as_before():
    assert inferred_architecture({"model_type": "brand-new", "architectures": ["BrandNewForCausalLM"]}).causal
    assert inferred_architecture({"model_type": "brand-new", "architectures": ["QWenLMHeadModel"]}).causal
    assert not inferred_architecture({"model_type": "brand-new"}).causal
    assert not architecture({"model_type": "t5", "is_encoder_decoder": True}).causal
    row = architecture({"model_type": "brand-new", "architectures": ["BrandNewForCausalLM"]})
    assert row.inferred and row.blocks is None and (row.pooling, row.head_bias, row.mask_positions) == (
        "last", False, True)
    assert "brand-new" not in ARCHITECTURES and "gpt2" in known_types() and "bert" in known_types()


# ---------------------------------------------------------------------- a new architecture, registered at runtime

TINY_TYPE = "w2s-tiny-arch"


def _tiny_classes():
    """A transformers model type of this test's own: blocks at ``body.blocks``, behind a decoy list of the same
    length (``decoys``) that the search without the table would take."""
    from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import BaseModelOutput

    class TinyConfig(PretrainedConfig):
        model_type = TINY_TYPE

        def __init__(self, vocab_size=32, hidden_size=8, num_hidden_layers=3, **kwargs):
            super().__init__(**kwargs)
            self.vocab_size, self.hidden_size, self.num_hidden_layers = vocab_size, hidden_size, num_hidden_layers

    class TinyModel(PreTrainedModel):
        config_class = TinyConfig
        base_model_prefix = "tiny"

        def __init__(self, config):
            super().__init__(config)
            h, n = config.hidden_size, config.num_hidden_layers
            self.decoys = torch.nn.ModuleList(torch.nn.Identity() for _ in range(n))
            self.embed = torch.nn.Embedding(config.vocab_size, h)
            self.positions = torch.nn.Embedding(64, h)
            self.body = torch.nn.Module()
            self.body.blocks = torch.nn.ModuleList(torch.nn.Linear(h, h) for _ in range(n))
            self.post_init()

        def _init_weights(self, module):
            pass

        def get_input_embeddings(self):
            return self.embed

        def forward(self, input_ids=None, attention_mask=None, position_ids=None, output_hidden_states=False,
                    **kwargs):
            if position_ids is None:
                position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
            x = self.embed(input_ids) + self.positions(position_ids)
            states = [x]
            for block in self.body.blocks:
                x = torch.tanh(block(x))
                states.append(x)
            return BaseModelOutput(last_hidden_state=x, hidden_states=tuple(states) if output_hidden_states else None)

    AutoConfig.register(TINY_TYPE, TinyConfig, exist_ok=True)
    AutoModel.register(TinyConfig, TinyModel, exist_ok=True)
    return TinyConfig, TinyModel


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory) -> Path:
    from transformers import BertTokenizerFast

    config_cls, model_cls = _tiny_classes()
    d = tmp_path_factory.mktemp("tiny-arch")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "a"]
    (d / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast.from_pretrained(str(d)).save_pretrained(str(d))
    torch.manual_seed(0)
    model_cls(config_cls(vocab_size=len(words))).save_pretrained(str(d))
    return d


ROW = Architecture(TINY_TYPE, causal=False, blocks="body.blocks", pooling="cls", mask_positions=True)


def test_a_new_architecture_is_one_row(tiny_arch, monkeypatch):
    """With its row, the new type is truncated, gradient-checkpointed and LoRA-adapted at its own blocks (not at
    the decoys), pools as the row says, pads left with positions that follow the mask, and gets the row's head."""
    monkeypatch.setitem(ARCHITECTURES, TINY_TYPE, ROW)

    probe = hf_model(str(tiny_arch))
    assert probe.architecture() == ROW and probe.pooling_name() == "cls" and probe.mask_positions()
    feats = probe.features(TEXTS, device=CPU)
    assert len(feats) == 3 and all(v.shape == (len(TEXTS), 8) for v in feats.values())
    left = hf_model(str(tiny_arch), padding_side="left", pooling="mean").features(TEXTS, device=CPU)
    right = hf_model(str(tiny_arch), padding_side="right", pooling="mean").features(TEXTS, device=CPU)
    for key in left:  # positions follow the mask: the padding side does not matter
        np.testing.assert_allclose(left[key], right[key], atol=1e-6)
    assert probe.head(2, 8, CPU).bias is not None

    m = hf_model(str(tiny_arch), linear_probe=False, layers=2, gradient_checkpointing=True, lora=True)
    assert m.identity()["finetune"]["head"] == "linear" and m.identity()["finetune"]["dropout"] is True
    module = m.classifier(2, CPU)
    assert module.hidden_state is None and len(module.backbone.body.blocks) == 2  # truncated in place
    assert len(module.backbone.decoys) == 3
    adapted = {n for n, _ in module.backbone.named_modules() if n.endswith(".lora_A")}
    assert adapted and all(n.startswith("body.blocks.") for n in adapted)
    assert module(TEXTS).shape == (len(TEXTS), 2)


def test_without_its_row_a_new_architecture_runs_on_the_search(tiny_arch):
    """No row: the type is inferred (an encoder) and its blocks are searched for, as before the table; the first
    list of the right length is the decoys, which is why a real new architecture gets a row."""
    m = hf_model(str(tiny_arch), linear_probe=False, layers=2)
    assert m.architecture().inferred and m.pooling_name() == "mean"
    module = m.classifier(2, CPU)
    assert len(module.backbone.decoys) == 2 and len(module.backbone.body.blocks) == 3


def test_no_blocks_is_one_line_naming_the_known_types(tiny_arch, monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, TINY_TYPE, dataclasses.replace(ROW, blocks=None))
    with pytest.raises(ConfigError, match="has no per-layer block list") as e:
        hf_model(str(tiny_arch), linear_probe=False, gradient_checkpointing=True).classifier(2, CPU)
    assert "\n" not in str(e.value)
    monkeypatch.delitem(ARCHITECTURES, TINY_TYPE)
    unknown = inferred_architecture({"model_type": TINY_TYPE})
    msg = str(hf.architectures.unknown_blocks("model 'hf:x'", unknown, "gradient_checkpointing"))
    assert "\n" not in msg and f"model_type {TINY_TYPE!r} is not in the hf: architecture table" in msg
    assert f"known: {known_types()}" in msg and "add a row to ARCHITECTURES" in msg


# ------------------------------------------------------------------------------------------ code fingerprints


def test_fingerprints_cover_every_module_of_the_package():
    """Stage ids and the feature cache's salt hash a factory's (or model class's) module and the package modules it
    imports: split over several modules, the ``hf:`` code must still be covered whole, so an edit in any helper
    (the table, pooling, LoRA, the classifier) reruns the stages it affects."""
    package = Path(hf.__file__).parent
    modules = {f"{hf.__name__}.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    assert {"architectures", "checkpoints", "classifier", "lora", "model", "tensors", "factory"} <= {
        m.rpartition(".")[2] for m in modules}
    hasher = CodeHasher()
    # the modules of the stage ops the package registers are the ops' code, hashed into the op stages' ids (and
    # not into every model stage's): each is covered by its op's fingerprint instead
    from w2s_harness.plugins.models.hf import elicit, generative, icm_grow

    op_modules = {elicit.__name__: (elicit.PromptLM, elicit.ICMLabels), icm_grow.__name__: (elicit.ICMLabels,),
                  generative.__name__: (generative.GenerativeTrain,)}
    for module, ops in op_modules.items():
        assert all(module in hasher.component(op) for op in ops), module
    for factory in (hf.hf_model, hf.HFFeatureModel, hf.HFFineTuneModel, presets.preset_model):
        covered = set(hasher.component(factory))
        missing = modules - covered - set(op_modules) - ({f"{hf.__name__}.factory"} if factory in (
            hf.HFFeatureModel, hf.HFFineTuneModel) else set())
        assert not missing, (factory, missing)
