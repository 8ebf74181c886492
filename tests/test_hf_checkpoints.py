"""``hf:`` checkpoints: the full-content identity of a checkpoint directory and its file-hash cache; hub ids that
cannot be loaded (offline, or the hub unreachable) fail fast with a one-line error.

Every test points ``W2S_HARNESS_CACHE_DIR`` at a temporary directory, so the real cache in the home directory is
never read or written.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest
from w2s_harness.plugins.models import hf
from w2s_harness.plugins.models.hf import dir_fingerprint, hf_model, resolve_checkpoint

from w2s_harness import ConfigError
from w2s_harness._data import filehash as _filehash
from w2s_harness._data import hub as _hub
from w2s_harness.utils import user_cache_dir

MIB = 1 << 20
HOUR_AGO_NS = time.time_ns() - 3600 * 10**9
WORDS = ["the", "movie", "was", "good", "bad", "i", "love", "hate", "it"]
TEXTS = ["the movie was good", "i hate it", "i love the movie"]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """A private hash cache directory, an empty in-process memo and no memoised hub probes."""
    cache = tmp_path / "w2s-cache"
    monkeypatch.setenv("W2S_HARNESS_CACHE_DIR", str(cache))
    monkeypatch.setattr(_filehash, "_SHA256_MEMO", {})
    monkeypatch.setattr(_hub, "_REACHABLE", {})
    return cache


@pytest.fixture
def count_hashing(monkeypatch):
    """The files :func:`w2s_harness.utils.file_sha256` reads for the cache (each a full read of the file)."""
    calls: list[str] = []
    real = _filehash.file_sha256

    def counting(path):
        calls.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(_filehash, "file_sha256", counting)
    return calls


def set_mtime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def flip_middle_byte(path: Path) -> int:
    """XOR one byte in the middle of ``path`` in place (same size); returns its offset."""
    size = path.stat().st_size
    offset = size // 2
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x01]))
    return offset


@pytest.fixture
def ckpt_dir(tmp_path) -> Path:
    """A checkpoint-like directory: small configs, a 5 MiB "weights" file, a subfolder, files that are ignored.
    Every mtime is an hour old (a freshly written file is hashed but not cached, see ``test_racy``)."""
    d = tmp_path / "ckpt"
    (d / "1_Pooling").mkdir(parents=True)
    (d / ".cache" / "huggingface").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 2}))
    (d / "vocab.txt").write_text("\n".join(WORDS))
    (d / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (d / "model.safetensors").write_bytes(os.urandom(5 * MIB + 123))
    (d / "README.md").write_text("# a model card\n")
    (d / "model.safetensors.lock").write_text("")
    (d / ".cache" / "huggingface" / "model.safetensors.metadata").write_text("etag 1\n")
    for f in d.rglob("*"):
        if f.is_file():
            set_mtime(f, HOUR_AGO_NS)
    return d


# --------------------------------------------------------------------------------------- content hash


def test_fingerprint_covers_every_byte(ckpt_dir):
    big = ckpt_dir / "model.safetensors"
    fp = dir_fingerprint(ckpt_dir)
    assert len(fp) == 16 and dir_fingerprint(ckpt_dir) == fp  # unchanged directory: same fingerprint
    offset = flip_middle_byte(big)
    assert MIB < offset < big.stat().st_size - MIB  # outside the first and last MiB (the old partial hash)
    changed = dir_fingerprint(ckpt_dir)
    assert changed != fp
    flip_middle_byte(big)  # back to the original bytes: content-addressed, the same fingerprint again
    assert dir_fingerprint(ckpt_dir) == fp
    # a file in a subfolder counts; README, lock files and the .cache folder do not
    (ckpt_dir / "README.md").write_text("# another card\n")
    (ckpt_dir / "model.safetensors.lock").write_text("12345")
    (ckpt_dir / ".cache" / "huggingface" / "model.safetensors.metadata").write_text("etag 2\n")
    assert dir_fingerprint(ckpt_dir) == fp
    (ckpt_dir / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert dir_fingerprint(ckpt_dir) != fp


def test_file_names_count(ckpt_dir):
    fp = dir_fingerprint(ckpt_dir)
    (ckpt_dir / "vocab.txt").rename(ckpt_dir / "vocab2.txt")
    assert dir_fingerprint(ckpt_dir) != fp


def test_second_computation_is_served_from_the_cache(ckpt_dir, isolated, count_hashing):
    big = ckpt_dir / "model.safetensors"
    fp = dir_fingerprint(ckpt_dir)
    assert sorted(count_hashing) == ["config.json", "config.json", "model.safetensors", "vocab.txt"]
    count_hashing.clear()
    assert dir_fingerprint(ckpt_dir) == fp and count_hashing == []  # the in-process memo

    # the cache file: version 1, one entry per resolved path with the size, mtime_ns and full sha256
    data = json.loads((isolated / "file-hashes.json").read_text())
    assert data["version"] == 1
    entry = data["files"][str(big.resolve())]
    assert entry == {
        "size": big.stat().st_size,
        "mtime_ns": HOUR_AGO_NS,
        "sha256": hashlib.sha256(big.read_bytes()).hexdigest(),
    }
    assert len(data["files"]) == 4

    # a new process (no memo) reads the cache file and hashes nothing
    _filehash._SHA256_MEMO.clear()
    assert dir_fingerprint(ckpt_dir) == fp and count_hashing == []

    # The contract, as make's and rsync's: a file with the same size and mtime is taken as unchanged. Proof that
    # the value is served from the cache: change a byte, restore the mtime, and the cached (now stale) hash
    # comes back from the memo and from the cache file alike.
    flip_middle_byte(big)
    set_mtime(big, HOUR_AGO_NS)
    assert dir_fingerprint(ckpt_dir) == fp and count_hashing == []
    _filehash._SHA256_MEMO.clear()
    assert dir_fingerprint(ckpt_dir) == fp and count_hashing == []
    # any other mtime (what a real write gives) re-reads that one file
    set_mtime(big, HOUR_AGO_NS + 10**9)
    assert dir_fingerprint(ckpt_dir) != fp and count_hashing == ["model.safetensors"]
    data = json.loads((isolated / "file-hashes.json").read_text())
    assert data["files"][str(big.resolve())]["mtime_ns"] == HOUR_AGO_NS + 10**9  # the stale entry is replaced


def test_racy_files_are_hashed_but_not_cached(ckpt_dir, isolated, count_hashing):
    """A file modified in the last two seconds could be rewritten within the same mtime tick: never cached."""
    fresh = ckpt_dir / "tokenizer.json"
    fresh.write_text('{"version": "1.0"}')
    dir_fingerprint(ckpt_dir)
    count_hashing.clear()
    dir_fingerprint(ckpt_dir)
    assert count_hashing == ["tokenizer.json"]
    files = json.loads((isolated / "file-hashes.json").read_text())["files"]
    assert str(fresh.resolve()) not in files and len(files) == 4


@pytest.mark.parametrize(
    "garbage",
    [b"{not json", b"", b"\xff\xfe\x00", b"[1, 2]", b'{"version": 1, "files": {"/x": {"size": "big"}}}'],
)
def test_corrupt_cache_file_is_ignored_and_rewritten(ckpt_dir, isolated, garbage, count_hashing):
    expected = dir_fingerprint(ckpt_dir)
    _filehash._SHA256_MEMO.clear()
    (isolated / "file-hashes.json").write_bytes(garbage)
    count_hashing.clear()
    assert dir_fingerprint(ckpt_dir) == expected
    assert len(count_hashing) == 4  # nothing usable in the corrupt file: everything hashed again
    data = json.loads((isolated / "file-hashes.json").read_text())
    assert data["version"] == 1 and len(data["files"]) == 4 and "/x" not in data["files"]


def test_unwritable_cache_is_not_an_error(ckpt_dir, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("W2S_HARNESS_CACHE_DIR", str(blocker / "sub"))  # cannot be created
    assert dir_fingerprint(ckpt_dir) == dir_fingerprint(ckpt_dir)


def test_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("W2S_HARNESS_CACHE_DIR", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "own"
    monkeypatch.delenv("W2S_HARNESS_CACHE_DIR")
    assert user_cache_dir() == tmp_path / "xdg" / "w2s-harness"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_dir() == tmp_path / "home" / ".cache" / "w2s-harness"


# ------------------------------------------------------------------------------------ through hf: models


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    """A randomly initialised one-layer BERT (hidden size 8) and its tokenizer, saved locally. The vocabulary
    size makes the weights file 5 MiB, so a byte in its middle is outside its first and last MiB."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path / "tiny-bert"
    d.mkdir()
    vocab = d / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast.from_pretrained(str(d)).save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=160_000,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=16,
        max_position_embeddings=32,
    )
    BertModel(cfg).save_pretrained(str(d))
    return d


def test_hf_identity_changes_with_one_weight_byte(tiny_model):
    weights = tiny_model / "model.safetensors"
    assert weights.stat().st_size > 3 * MIB
    before = hf_model(str(tiny_model), layers=1).identity()
    assert hf_model(str(tiny_model), layers=1).identity() == before
    offset = flip_middle_byte(weights)
    assert MIB < offset < weights.stat().st_size - MIB
    after = hf_model(str(tiny_model), layers=1).identity()
    assert after["checkpoint"] != before["checkpoint"] and after["checkpoint"].startswith("dir:")
    assert {k: v for k, v in after.items() if k != "checkpoint"} == {
        k: v for k, v in before.items() if k != "checkpoint"
    }


# ---------------------------------------------------------------------------------------------- hub ids


def unreachable_hub(monkeypatch, tmp_path) -> None:
    """HF_ENDPOINT is a closed local port, the HF cache an empty folder; no proxy, no offline switch."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(key, raising=False)
    for key in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """:func:`unreachable_hub`; returns the list of TCP probes made. ``from_pretrained`` must never be reached."""
    unreachable_hub(monkeypatch, tmp_path)
    probes: list[tuple[str, int]] = []
    real = socket.create_connection

    def probe(address, *args, **kwargs):
        probes.append(tuple(address))
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", probe)

    def never(*args, **kwargs):
        raise AssertionError("from_pretrained was reached")

    monkeypatch.setattr(hf.checkpoints, "load_pretrained", never)
    return probes


def test_hub_id_with_unreachable_hub_fails_fast(no_hub):
    endpoint = os.environ["HF_ENDPOINT"]
    m = hf_model("some-org/some-model", layers=1)  # creating it resolves nothing
    with pytest.raises(ConfigError) as e:
        m.identity()
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("cannot load 'some-org/some-model' offline: pass a local checkpoint directory")
    assert f"the hub {endpoint} is unreachable and 'some-org/some-model' is not in that cache" in msg
    assert "on a machine with network access" in msg and "HF_HUB_OFFLINE=1" in msg
    assert str(Path(os.environ["HF_HOME"]) / "hub") in msg
    assert no_hub == [("127.0.0.1", int(endpoint.rsplit(":", 1)[1]))]
    # the probe's answer is kept for the process: another model (the weak one, say) does not probe again
    with pytest.raises(ConfigError, match="'other-org/other-model' is not in that cache"):
        hf_model("other-org/other-model", linear_probe=False).identity()
    assert len(no_hub) == 1


def test_hub_id_offline_and_not_cached(no_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as e:
        hf_model("some-org/some-model").feature_key()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("cannot load 'some-org/some-model' offline: pass a local")
    assert msg.endswith("HF_HUB_OFFLINE is set and 'some-org/some-model' is not in that cache")
    assert no_hub == []  # offline: no probe at all
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "true")
    with pytest.raises(ConfigError, match="TRANSFORMERS_OFFLINE is set and 'some-org/some-model'"):
        resolve_checkpoint("some-org/some-model")


def test_hub_id_in_the_local_cache_is_not_probed(no_hub):
    """A hub id whose config is in the local HF cache resolves (from_pretrained reads the cache first)."""
    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--some-org--cached-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "config.json").write_text("{}")
    ckpt = resolve_checkpoint("some-org/cached-model")
    assert not ckpt.is_dir and ckpt.identity == "hub:some-org/cached-model"
    assert no_hub == []


def test_hub_id_with_reachable_hub_resolves(no_hub, monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}/")
        ckpt = resolve_checkpoint("some-org/some-model")
    assert ckpt.identity == "hub:some-org/some-model" and len(no_hub) == 1


def test_local_checkpoint_works_without_hub(monkeypatch, tmp_path, tiny_model):
    import torch

    unreachable_hub(monkeypatch, tmp_path)
    m = hf_model(str(tiny_model))
    assert m.identity()["checkpoint"].startswith("dir:") and _hub._REACHABLE == {}  # no probe for a directory
    out = m.features(TEXTS, device=torch.device("cpu"))
    assert out[m.feature_key()].shape == (len(TEXTS), 8)


def test_a_changed_weight_byte_reruns_exactly_the_stages_that_train_that_model(tiny_model, tmp_path):
    """Plan level: the strong model is the tiny checkpoint; one byte in the middle of its weights changes the
    ceiling's and the transfer's stage ids, and nothing of the weak side."""
    from test_pipeline import write_config

    from w2s_harness import create_plugin_manager, load_config, make_plan

    cfg = load_config(write_config(tmp_path, seeds="[0]", loss_block='[loss]\nname = "xent"\n'),
                      sets=[f'strong.name="hf:{tiny_model}"', "strong.epochs=1", "strong.lr=0.01"])

    def ids():
        return {s.name: s.id for s in make_plan(cfg, create_plugin_manager()).stages}

    before = ids()
    flip_middle_byte(tiny_model / "model.safetensors")
    after = ids()
    assert {n for n in before if before[n] != after[n]} == {"ceiling", "transfer[xent]"}
