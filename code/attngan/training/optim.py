"""The optimiser of both training stages: Adam as the authors' PyTorch (0.3) computed it.

PyTorch 0.3 updated ``p -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)``.
Since PyTorch 1.x, ``torch.optim.Adam`` computes ``p -= lr / (1 - beta1^t) * m /
(sqrt(v) / sqrt(1 - beta2^t) + eps)``: the same except that eps is in effect
``eps * sqrt(1 - beta2^t)``, 32 times smaller at the first step with beta2 0.999. That
matters wherever a gradient is within a few hundred eps of zero, and DAMSM pretraining
restarts its optimiser every epoch, so it is always in the first few hundred steps.
"""

from __future__ import annotations

import math

import torch

BETAS = (0.5, 0.999)  # both stages, as the original


class OriginalAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (any of its implementations: for-loop, foreach, fused) with
    PyTorch 0.3's eps placement, obtained by handing it ``eps / sqrt(1 - beta2^t)`` for
    step t. Its state_dict is Adam's, with each group's step count t (``steps``) kept on
    the host, so that a step reads nothing from the device; every parameter of a group is
    taken to be stepped every time (as in both training stages: each gets a gradient)."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = BETAS, eps: float = 1e-8, **kwargs):
        super().__init__(params, lr=lr, betas=betas, eps=eps, **kwargs)

    def _steps_taken(self, group: dict) -> int:
        if "steps" not in group:  # a state saved by torch.optim.Adam: read its count once
            states = [self.state[p] for p in group["params"] if "step" in self.state.get(p, {})]
            group["steps"] = int(states[0]["step"]) if states else 0
        return group["steps"]

    @torch.no_grad()
    def step(self, closure=None):
        eps = [group["eps"] for group in self.param_groups]
        for group in self.param_groups:
            group["steps"] = self._steps_taken(group) + 1
            group["eps"] = group["eps"] / math.sqrt(1 - group["betas"][1] ** group["steps"])
        try:
            return super().step(closure)
        finally:
            for group, value in zip(self.param_groups, eps):
                group["eps"] = value
