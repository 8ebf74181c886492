"""Built-in losses, registered through ``w2s_register_losses`` the same way a third-party plugin would be.

Each factory is the loss class. Its keyword parameters are the loss's config keys, and the object it builds
is callable as ``loss(logits (N, k), targets (N, k) soft labels or (N,) ints, step_frac=0.0) -> scalar``.
The PyTorch maths lives in ``w2s_harness.kernels.reference``. xent, product, logconf and the forward kl go
through ``w2s_harness.kernels.dispatch`` (``backend="auto"|"torch"|"triton"``) to the fused Triton kernels
on CUDA. Importing this module does not import torch.
"""

from w2s_harness import hookimpl

from .entropy import EntropyLoss
from .kl import KLLoss
from .logconf import LogConfLoss
from .product import ProductLoss
from .window import WindowLoss
from .xent import XentLoss

LOSSES = {
    "xent": (XentLoss, "soft-label cross-entropy to the weak labels (reference)"),
    "product": (ProductLoss, "CE to normalise(p**beta * y**alpha), target detached (reference)"),
    "logconf": (
        LogConfLoss,
        "confidence loss: CE to (1-c)*y + c*hardened(p), class-balanced (reference; k-class, buffer)",
    ),
    "kl": (KLLoss, "KL divergence to the weak labels, forward or reverse (EleutherAI/w2s)"),
    "entropy": (EntropyLoss, "(1-c)*CE to weak labels + c*entropy of the strong predictions"),
    "window": (WindowLoss, "CE that drops or down-weights rows inside a confidence window around 0.5"),
}

__all__ = [
    "LOSSES",
    "EntropyLoss",
    "KLLoss",
    "LogConfLoss",
    "ProductLoss",
    "WindowLoss",
    "XentLoss",
    "w2s_register_losses",
]


@hookimpl
def w2s_register_losses(registry):
    for name, (factory, description) in LOSSES.items():
        registry.add(name, factory, description=description)
