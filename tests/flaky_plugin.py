"""A plugin for the failure tests, loaded by name (so Ray workers import it too).

``flaky-xent`` is soft-label cross-entropy that raises while the file ``trigger`` exists: a test makes the stages
that train with it fail, then deletes the file and re-runs. The path is a parameter, so it is part of the stage
ids, which therefore stay the same between the failing run and the re-run.
"""

from __future__ import annotations

import os

from w2s_harness import hookimpl


class FlakyXent:
    def __init__(self, trigger: str = ""):
        self.trigger = trigger

    def __call__(self, logits, targets, step_frac=0.0):
        import torch

        if self.trigger and os.path.exists(self.trigger):
            raise RuntimeError(f"injected failure\nthe trigger file {self.trigger} exists")
        return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


@hookimpl
def w2s_register_losses(registry):
    registry.add("flaky-xent", FlakyXent, description="xent that raises while a trigger file exists (tests)")
