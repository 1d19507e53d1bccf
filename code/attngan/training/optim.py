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
    step t. Its state_dict is Adam's."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = BETAS, eps: float = 1e-8, **kwargs):
        super().__init__(params, lr=lr, betas=betas, eps=eps, **kwargs)

    def _next_step(self, group: dict) -> int:
        for p in group["params"]:
            state = self.state.get(p)
            if state and "step" in state:
                return int(state["step"]) + 1
        return 1

    @torch.no_grad()
    def step(self, closure=None):
        eps = [group["eps"] for group in self.param_groups]
        for group in self.param_groups:
            beta2 = group["betas"][1]
            group["eps"] = group["eps"] / math.sqrt(1 - beta2 ** self._next_step(group))
        try:
            return super().step(closure)
        finally:
            for group, value in zip(self.param_groups, eps):
                group["eps"] = value
