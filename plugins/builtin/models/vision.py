"""Vision backbones as frozen-feature models: ``torchvision:<arch>`` and ``timm:<model name>``.

The backbone embeds each image once (its pre-logits features: the input of its final classifier, e.g. AlexNet's
4096-d fc7, ResNet-50's 2048-d pooled features, a ViT's class token) and the feature cache keeps them, exactly as
for text encoders; only a linear head trains. The texts of the dataset are image file paths (``image-folder``,
``hf-images``). Images go through the reference preprocessing: resize the short side to ``resize`` (256),
center-crop ``image_size`` (224), scale to [0, 1] and normalise with the ImageNet mean and std.

**Weights are never downloaded.** ``weights`` is

* ``"DEFAULT"`` (the default) or a weight name (``"IMAGENET1K_V1"``): torchvision's pretrained file, read from
  the torch hub cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``); for
  ``timm:`` the model's pretrained file from the Hugging Face cache (``timm/<name>``), else from the torch hub
  cache. When it is not there, a one-line error names the URL or hub repository to download and the folder
  it goes in;
* a file path (``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors``): a state dict for the architecture (for example
  DINO's ``dino_resnet50_pretrain.pth`` for ``torchvision:resnet50``); keys of the final classifier may be
  missing (self-supervised checkpoints have none) or extra, any other mismatch is an error;
* ``"none"``: random weights from ``init_seed`` (for tests and baselines).

Head training defaults are the reference's vision probe (openai/weak-to-strong ``vision/``): Adam (AdamW with
``weight_decay = 0``), lr 1e-3, batch 100, cosine schedule over iterations, 10 epochs.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from w2s_harness import (
    ConfigError,
    DataError,
    check_bool,
    check_choice,
    check_int,
    check_str,
    head_train_config,
    takes_head_parameters,
    zero_linear_head,
)
from w2s_harness.utils import file_sha256s

#: The reference's vision probe (Adam, lr 1e-3, batch 100, cosine over iterations, 10 epochs, no weight decay).
PROBE_LR = 1e-3
PROBE_EPOCHS = 10
PROBE_BATCH = 100
#: The reference's preprocessing: resize the short side to 256, center-crop 224, ImageNet mean / std.
IMAGE_SIZE = 224
RESIZE = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
INSTALL = "pip install 'w2s-harness[vision]'"
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


def _require(module: str, owner: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"model {owner!r} needs {module}: {INSTALL}")


def _is_path(weights: str) -> bool:
    return os.sep in weights or "/" in weights or weights.lower().endswith(WEIGHT_SUFFIXES)


def read_state_dict(path: str, owner: str) -> dict[str, Any]:
    """The tensors of a weights file (safetensors or a torch pickle read with ``weights_only``), unwrapped from a
    ``state_dict`` / ``model`` entry and a ``module.`` prefix (DataParallel)."""
    import torch

    if not os.path.isfile(path):
        raise ConfigError(f"model {owner!r}: weights file {path!r} not found (relative paths are resolved from "
                          f"{os.getcwd()!r})")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"model {owner!r}: cannot read weights file {path!r}: {first}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model {owner!r}: {path!r} holds no state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


class VisionBackbone:
    """A frozen torchvision / timm image backbone + a linear head (a :class:`~w2s_harness.FeatureModel`).

    :param weights: ``"DEFAULT"``, a weight name, a weights file, or ``"none"`` (random, from ``init_seed``); see
        the module docstring. Never downloaded.
    :param image_size: center-crop size (default 224); ``resize``: the short side before cropping (default
        ``round(image_size / 0.875)``, 256 for 224); ``interpolation``: ``bilinear`` (default), ``bicubic`` or
        ``nearest``; ``mean`` / ``std``: normalisation (default ImageNet's).
    :param model_args: keyword arguments of the architecture's constructor (e.g. a tiny ViT's
        ``{depth = 1, embed_dim = 32}``).
    :param embed_batch_size: images per forward pass when embedding.
    :param pretrained_head: start the head from the backbone's own final classifier (its classes must be the
        dataset's, in order); with ``epochs = 0`` the head *is* that classifier, as the reference's weak supervisor
        (AlexNet's ImageNet predictions) is.
    :param lr/epochs/batch_size/weight_decay/warmup_frac: head training; defaults are the reference's vision
        probe (1e-3, 10, 100, 0, 0; AdamW with no weight decay is Adam). ``solver = "lbfgs"`` (with ``C``,
        ``max_iter``, ``tol``) solves the probe instead; ``weak_labels``, ``early_stop``, ``val_frac``,
        ``curve_every`` as for every model.
    """

    @takes_head_parameters
    def __init__(self, source: str, target: str, *, weights: str = "DEFAULT", image_size: int = IMAGE_SIZE,
                 resize: int | None = None, interpolation: str = "bilinear", mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, model_args: dict | None = None, init_seed: int = 0,
                 embed_batch_size: int = 64, pretrained_head: bool = False, solver: str = "adamw",
                 **head: Any):
        self.source, self.target = source, target
        self.name = f"{source}:{target}"
        owner = f"model {self.name!r}"
        if not isinstance(target, str) or not target:
            raise ConfigError(f"{owner}: name an architecture, e.g. {source}:resnet50")
        check_str(weights, "weights", owner=owner, what='"DEFAULT", a weight name, a file path or "none"')
        for key, value, lo in (("image_size", image_size, 1), ("resize", resize, 1), ("init_seed", init_seed, 0),
                               ("embed_batch_size", embed_batch_size, 1)):
            check_int(value, key, owner=owner, lo=lo, optional=key == "resize")
        check_choice(interpolation, "interpolation", INTERPOLATIONS, owner=owner)
        norm = {}
        for key, value, default in (("mean", mean, IMAGENET_MEAN), ("std", std, IMAGENET_STD)):
            value = default if value is None else value
            if (not isinstance(value, (list, tuple)) or len(value) != 3
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                    or (key == "std" and min(value) <= 0)):
                raise ConfigError(f"{owner}: {key} must be 3 numbers (one per RGB channel), got {value!r}")
            norm[key] = [float(v) for v in value]
        check_bool(pretrained_head, "pretrained_head", owner=owner)
        if pretrained_head and solver != "adamw":
            raise ConfigError(f'{owner}: pretrained_head needs solver = "adamw" (L-BFGS fits the head from zero)')
        if model_args is not None and not isinstance(model_args, dict):
            raise ConfigError(f"{owner}: model_args must be a table of constructor arguments, got {model_args!r}")
        self.weights = weights
        self.image_size = image_size
        self.resize = resize if resize is not None else round(image_size / 0.875)
        self.interpolation = interpolation
        self.mean, self.std = norm["mean"], norm["std"]
        self.model_args = dict(model_args or {})
        self.init_seed = init_seed
        self.embed_batch_size = embed_batch_size
        self.pretrained_head = pretrained_head
        # the reference's vision probe (Adam = AdamW without weight decay) unless the user picks L-BFGS
        self.train_config = head_train_config(owner, {**head, "solver": solver}, lr=PROBE_LR, epochs=PROBE_EPOCHS,
                                              batch_size=PROBE_BATCH)
        _require("torchvision", self.name)
        if source == "timm":
            _require("timm", self.name)
        self._weights_id: str | None = None
        self._net = None
        self._classifier: tuple[np.ndarray, np.ndarray | None] | None = None

    # ------------------------------------------------------------------------------------- weights

    def _owner(self) -> str:
        return f"model {self.name!r}"

    def _build(self):
        """The architecture with its final classifier still in place, and that classifier's module name."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.init_seed)
            if self.source == "torchvision":
                import torchvision

                if self.target not in torchvision.models.list_models():
                    import difflib

                    close = difflib.get_close_matches(self.target, torchvision.models.list_models(), n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    raise ConfigError(f"{self._owner()}: torchvision has no model {self.target!r}.{hint} "
                                      f"See torchvision.models.list_models()")
                net = self._call(lambda: torchvision.models.get_model(self.target, weights=None, **self.model_args))
                linears = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Linear)]
                if not linears:
                    raise ConfigError(f"{self._owner()}: {self.target} has no linear classifier to read the features "
                                      f"before; use an architecture whose last layer is nn.Linear")
                return net, linears[-1]
            import timm

            if not timm.is_model(self.target) and not timm.is_model(self.target.split(".")[0]):
                raise ConfigError(f"{self._owner()}: timm has no model {self.target!r}; see timm.list_models()")
            net = self._call(lambda: timm.create_model(self.target, pretrained=False, **self.model_args))
            return net, net.pretrained_cfg.get("classifier") or "head"

    def _call(self, make):
        try:
            return make()
        except TypeError as exc:
            raise ConfigError(f"{self._owner()}: bad model_args {self.model_args}: {exc}") from None

    def weights_file(self) -> str | None:
        """The local file the pretrained weights come from (``None`` for ``weights = "none"``); a one-line
        :class:`ConfigError` naming what to download, and where, when it is not on this machine."""
        if self.weights.lower() == "none":
            return None
        if _is_path(self.weights):
            path = os.path.expanduser(self.weights)
            if not os.path.isfile(path):
                raise ConfigError(f"{self._owner()}: weights file {self.weights!r} not found (relative paths are "
                                  f"resolved from {os.getcwd()!r})")
            return path
        import torch

        checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
        if self.source == "torchvision":
            import torchvision

            try:
                enum = torchvision.models.get_model_weights(self.target)
                w = enum.DEFAULT if self.weights.upper() == "DEFAULT" else enum[self.weights]
            except (KeyError, ValueError):
                raise ConfigError(f"{self._owner()}: torchvision has no weights {self.weights!r} for {self.target}; "
                                  f"use DEFAULT, a weights file or \"none\"") from None
            url = w.url
            local = checkpoints / os.path.basename(url.split("?")[0])
            if local.is_file():
                return str(local)
            raise ConfigError(f"{self._owner()}: pretrained weights {w} are not on this machine and are never "
                              f"downloaded: download {url} into {checkpoints}/ (or set weights = \"/path/to/file"
                              f".pth\", or weights = \"none\" for random weights)")
        import timm

        if self.weights.upper() != "DEFAULT":
            raise ConfigError(f"{self._owner()}: weights = {self.weights!r}: for timm: models the tag in the name picks "
                              f"the weights ({self.target.split('.')[0]}.<tag>); use \"DEFAULT\", a file or \"none\"")
        cfg = timm.models.get_pretrained_cfg(self.target)
        if cfg is None:
            raise ConfigError(f"{self._owner()}: timm knows no pretrained weights for {self.target!r}; name a "
                              f"tagged model (e.g. vit_base_patch8_224.dino), a weights file or \"none\"")
        repo, url = getattr(cfg, "hf_hub_id", None), getattr(cfg, "url", None)
        if url and (getattr(cfg, "custom_load", False) or not url.split("?")[0].endswith(WEIGHT_SUFFIXES)):
            url = None  # a format timm converts itself (a JAX .npz): only its hub copy is read here
        if repo:
            from huggingface_hub import constants, try_to_load_from_cache

            for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
                found = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE)
                if isinstance(found, str) and os.path.isfile(found):
                    return found
        if url:
            local = checkpoints / os.path.basename(url.split("?")[0])
            if local.is_file():
                return str(local)
        where = []
        if repo:
            from huggingface_hub import constants

            where.append(f"the hub repository {repo} into the Hugging Face cache {constants.HF_HUB_CACHE} "
                         f"(hf download {repo})")
        if url:
            where.append(f"{url} into {checkpoints}/")
        raise ConfigError(f"{self._owner()}: pretrained weights for {self.target} are not on this machine and are "
                          f"never downloaded: download {' or '.join(where) or 'them'} (or set weights = \"/path/to/"
                          f"file\", or weights = \"none\" for random weights)")

    def weights_id(self) -> str:
        """What the weights are: the sha256 of the weights file, or the random-init seed (with the library
        versions, whose initialisers draw the values)."""
        if self._weights_id is None:
            path = self.weights_file()
            if path is None:
                import torch
                import torchvision

                lib = f"torch=={torch.__version__},torchvision=={torchvision.__version__}"
                if self.source == "timm":
                    import timm

                    lib += f",timm=={timm.__version__}"
                self._weights_id = f"random:init_seed={self.init_seed}:{lib}"
            else:
                self._weights_id = "sha256:" + file_sha256s([path])[0]
        return self._weights_id

    # ------------------------------------------------------------------------------------- protocol

    def feature_key(self) -> str:
        spec = {"model": self.name, "weights": self.weights_id(), "model_args": self.model_args,
                "image_size": self.image_size, "resize": self.resize, "interpolation": self.interpolation,
                "mean": self.mean, "std": self.std, "features": "pre-logits"}
        return "vision|" + json.dumps(spec, sort_keys=True)

    def identity(self) -> dict[str, Any]:
        out = {"name": self.name, "features": self.feature_key(), "train": asdict(self.train_config)}
        if self.pretrained_head:  # the head starts from the classifier of the weights the features key names
            out["head"] = "pretrained"
        return out

    def network(self):
        """The frozen backbone in eval mode, its final classifier replaced by identity (built once)."""
        if self._net is None:
            import torch

            net, classifier = self._build()
            path = self.weights_file()
            if path is not None:
                state = read_state_dict(path, self.name)
                if self.source == "timm":
                    state = _timm_filter(net, state)
                missing, unexpected = net.load_state_dict(state, strict=False)
                head = classifier + "."
                missing = [k for k in missing if not k.startswith(head)]
                unexpected = [k for k in unexpected if not k.startswith(head)]
                if missing or unexpected:
                    parts = ([f"{len(missing)} missing (e.g. {missing[0]!r})"] if missing else []) + (
                        [f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})"] if unexpected else [])
                    raise ConfigError(f"{self._owner()}: weights {path!r} do not fit {self.target}: "
                                      f"{', '.join(parts)} keys")
            fc = net.get_submodule(classifier)
            if isinstance(fc, torch.nn.Linear):  # kept for pretrained_head (the backbone drops it)
                self._classifier = (fc.weight.detach().cpu().numpy().copy(),
                                    None if fc.bias is None else fc.bias.detach().cpu().numpy().copy())
            if self.source == "timm":
                net.reset_classifier(0)
            else:
                parent_name, _, attr = classifier.rpartition(".")
                parent = net.get_submodule(parent_name) if parent_name else net
                setattr(parent, attr, torch.nn.Identity())
            net.eval()
            for p in net.parameters():
                p.requires_grad_(False)
            self._net = net
        return self._net

    def transform(self):
        """The preprocessing of one PIL image into a ``(3, image_size, image_size)`` tensor."""
        from torchvision import transforms

        mode = getattr(transforms.InterpolationMode, self.interpolation.upper())
        return transforms.Compose([
            transforms.Resize(self.resize, interpolation=mode),
            transforms.CenterCrop(self.image_size),
            transforms.ToTensor(),
            transforms.Normalize(self.mean, self.std),
        ])

    def features(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                 device: Any = None) -> dict[str, np.ndarray]:
        import torch
        from PIL import Image, UnidentifiedImageError

        net = self.network()
        device = torch.device("cpu") if device is None else torch.device(device)
        net.to(device)
        tf = self.transform()
        out = []
        for start in range(0, len(texts), self.embed_batch_size):
            batch = []
            for path in texts[start:start + self.embed_batch_size]:
                try:
                    with Image.open(path) as im:
                        batch.append(tf(im.convert("RGB")))
                except (OSError, UnidentifiedImageError, ValueError) as exc:
                    shown = path if len(path) <= 80 else path[:77] + "..."
                    raise DataError(f"{self._owner()} reads images, and {shown!r} is not a readable image file "
                                    f"({type(exc).__name__}); use an image dataset (image-folder, hf-images)") from None
            with torch.inference_mode():
                feats = net(torch.stack(batch).to(device))
            if isinstance(feats, (tuple, list)):
                feats = feats[0]
            out.append(feats.flatten(1).float().cpu().numpy())
            if progress is not None:
                progress(len(batch))
        arr = np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
        return {self.feature_key(): arr.astype(np.float32, copy=False)}

    def head(self, n_classes: int, in_features: int, device: Any):
        if not self.pretrained_head:
            return zero_linear_head(in_features, n_classes, device)
        import torch

        if self._classifier is None:
            self.network()
        if self._classifier is None:
            raise ConfigError(f"{self._owner()}: pretrained_head needs a linear final classifier; {self.target} has none")
        weight, bias = self._classifier
        if weight.shape != (n_classes, in_features):
            raise ConfigError(
                f"{self._owner()}: pretrained_head: the backbone's classifier maps {weight.shape[1]} features to "
                f"{weight.shape[0]} classes, the task has {n_classes}; use a dataset with the classifier's classes "
                f"in its order (ImageNet: class folders named by WordNet id), or drop pretrained_head")
        head = torch.nn.Linear(in_features, n_classes, bias=bias is not None)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(weight))
            if bias is not None:
                head.bias.copy_(torch.from_numpy(bias))
        return head if device is None else head.to(device)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_net": None}  # workers train heads on cached features: no backbone needed

    def __repr__(self) -> str:
        return f"VisionBackbone({self.name!r}, weights={self.weights!r})"


def _timm_filter(net, state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint in its original layout (e.g. DINO's own ``dino_vitbase8_pretrain.pth``) converted to timm's,
    by the model module's ``checkpoint_filter_fn`` (what timm applies to the files it downloads itself)."""
    import sys

    convert = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
    if convert is None:
        return state
    try:
        return convert(state, net)
    except Exception:  # noqa: BLE001 - a layout the filter does not know: load it as it is (checked after)
        return state


def torchvision_model(target: str, **params: Any) -> VisionBackbone:
    """``torchvision:<arch>``: a torchvision classification backbone (``alexnet``, ``resnet50``, ``vit_b_16``)."""
    return VisionBackbone("torchvision", target, **params)


def timm_model(target: str, **params: Any) -> VisionBackbone:
    """``timm:<name>``: a timm backbone (``vit_base_patch8_224.dino``, ...)."""
    return VisionBackbone("timm", target, **params)


# The registry checks config keys against the factory's signature: expose VisionBackbone's (less self, source).
_init = inspect.signature(VisionBackbone.__init__)
for _factory in (torchvision_model, timm_model):
    _factory.__signature__ = _init.replace(parameters=list(_init.parameters.values())[2:])
