"""The vision plugin: image datasets (image folders, HF datasets with an image column) and frozen torchvision /
timm backbones, on a few generated images and tiny random backbones (no weights or data are downloaded)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchvision")
pytest.importorskip("timm")

import torch

from w2s_harness import ConfigError, DataError, create_dataset, create_model
from w2s_harness._cli.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

#: A tiny ViT (one block, 32-d) at 32 px: random weights, fast on CPU.
TINY_VIT = {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}


def make_folder(root: Path, n: int = 6, size: tuple[int, int] = (20, 24), seed: int = 0) -> Path:
    """Class folders ``red``/``blue`` of noisy PNGs tinted by class (plus a nested folder and a non-image file)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, (name, tint) in enumerate((("red", (160, 40, 40)), ("blue", (40, 40, 160)))):
        for i in range(n):
            sub = root / name / ("nested" if i % 3 == 0 else "")
            sub.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(rng.normal(tint, 50, size=(*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(sub / f"img{i}.png")
        (root / name / "notes.txt").write_text("not an image")
    return root


def direct_features(net, paths, image_size: int) -> np.ndarray:
    """The reference preprocessing (resize to image_size / 0.875, center crop, ImageNet normalisation) + ``net``."""
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose([transforms.Resize(round(image_size / 0.875)), transforms.CenterCrop(image_size),
                             transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        return net(x).flatten(1).numpy()


def test_image_folder_rows_are_torchvisions_imagefolder(tmp_path):
    from torchvision.datasets import ImageFolder as TVImageFolder

    root = make_folder(tmp_path / "imgs")
    ref = TVImageFolder(str(root))
    ds = create_dataset("image-folder", path=str(root), n_test=4)
    data = ds.load()  # every row is used (4 test + 8 training): row order is the scan order
    assert data.class_names == ref.classes == ["blue", "red"]
    assert data.texts == [p for p, _ in ref.samples] and data.labels.tolist() == [c for _, c in ref.samples]
    # the fingerprint is the images' content: a moved folder keeps it (and its cached features), an edit changes it
    moved = shutil.copytree(root, tmp_path / "elsewhere")
    assert create_dataset("image-folder", path=str(moved), n_test=4).load().fingerprint == data.fingerprint
    (moved / "red" / "img1.png").write_bytes((root / "blue" / "img1.png").read_bytes())
    assert create_dataset("image-folder", path=str(moved), n_test=4).load().fingerprint != data.fingerprint


def test_image_hashes_are_read_once_and_served_from_the_hash_cache(tmp_path, monkeypatch):
    """Image digests go through the shared file-hash cache: a second load (even in a fresh process, memo emptied)
    reads no image again, with the same fingerprint; a changed image is read again."""
    from w2s_harness._data import filehash as _filehash

    monkeypatch.setenv("W2S_HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_filehash, "_SHA256_MEMO", {})
    root = make_folder(tmp_path / "imgs")
    hour_ago = time.time_ns() - 3600 * 10**9
    for p in root.rglob("*.png"):  # older than the racy window, so their digests are cached
        os.utime(p, ns=(hour_ago, hour_ago))
    reads: list[str] = []
    real = _filehash.file_sha256
    monkeypatch.setattr(_filehash, "file_sha256", lambda p: reads.append(Path(p).name) or real(p))
    first = create_dataset("image-folder", path=str(root), n_test=4).load()
    assert len(reads) == 12 and first.fingerprint
    _filehash._SHA256_MEMO.clear()  # as a new process: only the cache file remains
    again = create_dataset("image-folder", path=str(root), n_test=4).load()
    assert len(reads) == 12 and again.fingerprint == first.fingerprint
    changed = root / "red" / "img1.png"
    changed.write_bytes((root / "blue" / "img1.png").read_bytes())
    os.utime(changed, ns=(hour_ago + 10**9, hour_ago + 10**9))
    edited = create_dataset("image-folder", path=str(root), n_test=4).load()
    assert reads[12:] == ["img1.png"] and edited.fingerprint != first.fingerprint


def test_image_folder_with_a_designated_test_folder(tmp_path):
    train, test = make_folder(tmp_path / "train"), make_folder(tmp_path / "val", n=3, seed=1)
    ds = create_dataset("image-folder", path=str(train), test_path=str(test))
    data, s = ds.load(), ds.splits(0)
    assert sorted(data.texts[i] for i in s.test) == sorted(str(p) for p in test.rglob("*.png"))
    assert all(data.texts[i].startswith(str(train)) for i in np.concatenate([s.train1, s.train2]))
    (test / "green").mkdir()
    with pytest.raises(DataError, match=r"test_path has class folders \['green'\] that path .* lacks"):
        create_dataset("image-folder", path=str(train), test_path=str(test)).load()
    with pytest.raises(DataError, match="no class folders"):
        create_dataset("image-folder", path=str(tmp_path / "train" / "red" / "nested")).load()


def test_hf_images_from_parquet_with_an_image_column(tmp_path):
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, size=(8, 10, 3), dtype=np.uint8) for _ in range(10)]
    features = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["cat", "dog"])})
    for split, rows in (("train", range(7)), ("test", range(7, 10))):
        datasets.Dataset.from_dict({"img": [Image.fromarray(arrays[i]) for i in rows], "y": [i % 2 for i in rows]},
                                   features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    ds = create_dataset("hf-images", data_files={"train": str(tmp_path / "train.parquet"),
                                                 "test": str(tmp_path / "test.parquet")},
                        test_split="test", image_column="img", label_column="y", image_dir=str(tmp_path / "cache"))
    data, s = ds.load(), ds.splits(0)
    assert data.class_names == ["cat", "dog"] and data.labels.tolist() == [i % 2 for i in range(10)]
    for i, path in enumerate(data.texts):  # decoded from the content-addressed copies, pixel for pixel
        assert Path(path).parent.parent == tmp_path / "cache"
        assert Path(path).stem == hashlib.sha256(Path(path).read_bytes()).hexdigest()
        np.testing.assert_array_equal(np.asarray(Image.open(path)), arrays[i])
    assert s.test.tolist() == [7, 8, 9]
    with pytest.raises(DataError, match="no column 'image' in split 'train'; columns: img, y"):
        create_dataset("hf-images", data_files=str(tmp_path / "train.parquet"), label_column="y").load()


def test_torchvision_features_are_the_pre_logits_of_the_backbone(tmp_path):
    import torchvision
    from torchvision.models.feature_extraction import create_feature_extractor

    paths = sorted(str(p) for p in make_folder(tmp_path / "imgs", n=3).rglob("*.png"))
    model = create_model("torchvision:resnet18", weights="none", init_seed=3, image_size=32)
    got = model.features(paths)[model.feature_key()]
    torch.manual_seed(3)
    net = create_feature_extractor(torchvision.models.resnet18().eval(), {"flatten": "out"})
    np.testing.assert_allclose(got, direct_features(lambda x: net(x)["out"], paths, 32), rtol=1e-4, atol=1e-5)
    assert got.shape == (len(paths), 512) and got.dtype == np.float32
    # the reference's probe is the default head: Adam (AdamW, no decay), lr 1e-3, batch 100, 10 epochs, cosine
    cfg = model.train_config
    assert (cfg.solver, cfg.lr, cfg.batch_size, cfg.epochs, cfg.weight_decay, cfg.warmup_frac) == (
        "adamw", 1e-3, 100, 10, 0.0, 0.0)


def test_timm_features_are_the_pre_logits_of_the_backbone(tmp_path):
    import timm

    paths = sorted(str(p) for p in make_folder(tmp_path / "imgs", n=2).rglob("*.png"))
    model = create_model("timm:vit_tiny_patch16_224", weights="none", image_size=32, model_args=TINY_VIT)
    got = model.features(paths)[model.feature_key()]
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT).eval()
    ref = direct_features(lambda x: net.forward_head(net.forward_features(x), pre_logits=True), paths, 32)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert got.shape == (len(paths), 32)


def small_state(seed: int, drop_classifier: bool) -> dict:
    import torchvision

    torch.manual_seed(seed)
    state = torchvision.models.mobilenet_v3_small().state_dict()
    return {k: v for k, v in state.items() if not (drop_classifier and k.startswith("classifier.3."))}


def test_weights_files_load_and_a_checkpoint_without_classifier_fits(tmp_path):
    paths = sorted(str(p) for p in make_folder(tmp_path / "imgs", n=2).rglob("*.png"))
    random5 = create_model("torchvision:mobilenet_v3_small", weights="none", init_seed=5, image_size=32)
    want = random5.features(paths)[random5.feature_key()]
    # a self-supervised checkpoint has no classifier (as DINO's dino_resnet50_pretrain.pth): it still fits
    path = tmp_path / "ssl.pth"
    torch.save(small_state(5, drop_classifier=True), path)
    model = create_model("torchvision:mobilenet_v3_small", weights=str(path), image_size=32)
    np.testing.assert_allclose(model.features(paths)[model.feature_key()], want, rtol=1e-5, atol=1e-6)
    assert hashlib.sha256(path.read_bytes()).hexdigest() in model.feature_key()
    torch.save({"state_dict": {"module." + k: v for k, v in small_state(5, False).items()}}, path)
    wrapped = create_model("torchvision:mobilenet_v3_small", weights=str(path), image_size=32)
    np.testing.assert_allclose(wrapped.features(paths)[wrapped.feature_key()], want, rtol=1e-5, atol=1e-6)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError) as err:
        create_model("torchvision:mobilenet_v3_small", weights=str(tmp_path / "other.pth")).network()
    assert "do not fit mobilenet_v3_small" in str(err.value) and "unexpected (e.g. 'conv.weight')" in str(err.value)


def test_pretrained_weights_come_only_from_local_caches(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ConfigError) as err:
        create_model("torchvision:mobilenet_v3_small").feature_key()
    msg = str(err.value)
    assert "\n" not in msg and "never downloaded" in msg
    url = "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth"
    assert f"download {url} into {tmp_path / 'torch' / 'hub' / 'checkpoints'}/" in msg
    # the file where torch hub keeps it is used, as torchvision would after a download
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(small_state(7, drop_classifier=False), tmp_path / "torch" / "hub" / "checkpoints" / Path(url).name)
    paths = sorted(str(p) for p in make_folder(tmp_path / "imgs", n=1).rglob("*.png"))
    cached = create_model("torchvision:mobilenet_v3_small", image_size=32)
    random7 = create_model("torchvision:mobilenet_v3_small", weights="none", init_seed=7, image_size=32)
    np.testing.assert_allclose(cached.features(paths)[cached.feature_key()],
                               random7.features(paths)[random7.feature_key()], rtol=1e-5, atol=1e-6)
    # timm: the model's repository in the Hugging Face cache
    name = "vit_tiny_patch16_224.augreg_in21k"
    with pytest.raises(ConfigError, match=r"download the hub repository timm/vit_tiny_patch16_224.augreg_in21k into "
                                          r"the Hugging Face cache .*hf \(hf download"):
        create_model(f"timm:{name}", model_args=TINY_VIT).feature_key()
    repo = tmp_path / "hf" / "models--timm--vit_tiny_patch16_224.augreg_in21k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    torch.manual_seed(11)
    save_file(timm.create_model(name, pretrained=False, **TINY_VIT).state_dict(),
              str(repo / "snapshots" / "abc123" / "model.safetensors"))
    hub = create_model(f"timm:{name}", model_args=TINY_VIT, image_size=32)
    ref = create_model(f"timm:{name}", model_args=TINY_VIT, image_size=32, weights="none", init_seed=11)
    np.testing.assert_allclose(hub.features(paths)[hub.feature_key()], ref.features(paths)[ref.feature_key()],
                               rtol=1e-5, atol=1e-6)


def test_bad_vision_input_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"torchvision has no model 'resnet5'. Did you mean 'resnet50'\?"):
        create_model("torchvision:resnet5", weights="none").network()
    with pytest.raises(ConfigError, match=r"weights file 'nope.pth' not found"):
        create_model("torchvision:resnet18", weights="nope.pth").feature_key()
    with pytest.raises(ConfigError, match="mean must be 3 numbers"):
        create_model("torchvision:resnet18", mean=[0.5])
    model = create_model("torchvision:resnet18", weights="none", image_size=32)
    with pytest.raises(DataError, match=r"reads images, and 'a tweet' is not a readable image file"):
        model.features(["a tweet"])


def write_config(tmp_path: Path, root: Path) -> Path:
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"""
[dataset]
name = "image-folder"
path = "{root.as_posix()}"
n_test = 8

[weak]
name = "torchvision:alexnet"
weights = "none"
image_size = 64

[strong]
name = "timm:vit_tiny_patch16_224"
weights = "none"
image_size = 32
model_args = {json.dumps(TINY_VIT).replace(":", " =").replace('"', "")}

[loss]
name = "xent"

[strategy]
name = "naive"

[run]
seeds = [0]
device = "cpu"
workers = 1
output_dir = "{(tmp_path / 'out').as_posix()}"
""")
    return cfg


def test_alexnet_supervises_a_vit_end_to_end_through_the_cli(tmp_path, capsys):
    root = make_folder(tmp_path / "imgs", n=12)
    cfg = write_config(tmp_path, root)
    assert main(["run", "--config", str(cfg), "--json"]) == 0, capsys.readouterr().err
    res = json.loads(capsys.readouterr().out)
    assert res["status"] == "complete"
    (row,) = res["experiments"]
    assert (row["weak"], row["strong"]) == ("torchvision:alexnet", "timm:vit_tiny_patch16_224")
    for key in ("weak_acc", "ceiling_acc", "transfer_acc"):
        assert 0.0 <= row[key]["per_seed"][0] <= 1.0
    # both backbones' features are in the run's feature cache: the ViT's equal the backbone run directly
    data = create_dataset("image-folder", path=str(root), n_test=8).load()
    strong = create_model("timm:vit_tiny_patch16_224", weights="none", image_size=32, model_args=TINY_VIT)
    want = strong.features(data.texts)[strong.feature_key()]
    cached = [np.load(p) for p in (tmp_path / "out" / "features").glob("*.npy")]
    assert sorted(a.shape for a in cached) == [(24, 32), (24, 4096)]
    np.testing.assert_allclose(next(a for a in cached if a.shape[1] == 32), want, rtol=1e-5, atol=1e-6)
    # a rerun is served from the stage store
    assert main(["run", "--config", str(cfg), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["timings"]["stages_computed"] == 0


def test_pretrained_head_makes_the_weak_model_the_backbones_own_classifier(tmp_path, capsys):
    """As the reference's weak supervisor (AlexNet's ImageNet predictions): pretrained_head + epochs = 0."""
    import torchvision

    root = make_folder(tmp_path / "imgs", n=10)
    cfg = write_config(tmp_path, root)
    text = cfg.read_text().replace('name = "torchvision:alexnet"\nweights = "none"\nimage_size = 64', (
        'name = "torchvision:resnet18"\nweights = "none"\ninit_seed = 5\nimage_size = 32\n'
        'model_args = { num_classes = 2 }\npretrained_head = true\nepochs = 0'))
    cfg.write_text(text)
    assert main(["run", "--config", str(cfg), "--json"]) == 0, capsys.readouterr().err
    res = json.loads(capsys.readouterr().out)
    # the full network run directly: its accuracy on the test rows and on the rows it labels (train2)
    torch.manual_seed(5)
    net = torchvision.models.resnet18(num_classes=2).eval()
    ds = create_dataset("image-folder", path=str(root), n_test=8)
    data, split = ds.load(), ds.splits(0)
    pred = direct_features(net, data.texts, 32).argmax(axis=1)
    stages = {s["kind"]: s["metrics"] for s in res["stages"]}
    # the weak stage's stored predictions on every row are the network's softmax
    from w2s_harness._execution.store import StageStore

    weak_id = next(s["id"] for s in res["stages"] if s["kind"] == "train_weak")
    _, arrays = StageStore(tmp_path / "out").load(weak_id)
    logits = torch.from_numpy(direct_features(net, [data.texts[i] for i in arrays["indices"]], 32))
    np.testing.assert_allclose(arrays["probs"], torch.softmax(logits, dim=1).numpy(), rtol=1e-4, atol=1e-6)
    assert stages["train_weak"]["test_acc"] == pytest.approx(float(np.mean(pred[split.test] == data.labels[split.test])))
    assert stages["label"]["label_acc"] == pytest.approx(float(np.mean(pred[split.train2] == data.labels[split.train2])))
    with pytest.raises(ConfigError, match=r"classifier maps 1024 features to 1000 classes, the task has 2"):
        create_model("torchvision:mobilenet_v3_small", weights="none", pretrained_head=True).head(2, 1024, None)
    with pytest.raises(ConfigError, match='pretrained_head needs solver = "adamw"'):
        create_model("torchvision:mobilenet_v3_small", pretrained_head=True, solver="lbfgs")


def test_hf_images_reads_a_local_image_folder_in_place(tmp_path):
    """``path`` = a folder of class folders goes through datasets' imagefolder builder; nothing is copied."""
    root = make_folder(tmp_path / "imgs", n=4)
    for nested in root.glob("*/nested"):  # datasets' builder drops the labels when images sit at other depths
        for f in nested.iterdir():
            f.rename(nested.parent / f.name)
        nested.rmdir()
    hf = create_dataset("hf-images", path=str(root), n_test=2, image_dir=str(tmp_path / "copies")).load()
    folder = create_dataset("image-folder", path=str(root), n_test=2).load()
    assert hf.class_names == folder.class_names
    assert sorted(zip(hf.texts, hf.labels.tolist())) == sorted(zip(folder.texts, folder.labels.tolist()))
    assert not (tmp_path / "copies").exists()
