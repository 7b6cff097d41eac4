"""The simulator's loss: the device's per-sample loss (``runtime/losses.py``) as a torch
autograd Function whose backward returns exactly the device's logit gradients, so that the
simulator's weight updates start from the same bits as the generated C's."""

from __future__ import annotations

import torch

from microtrain.runtime.losses import softmax_cross_entropy


class DeviceCrossEntropy(torch.autograd.Function):
    """Per-sample losses of ``softmax_cross_entropy`` with its exact gradient as the backward
    (scaled by the incoming gradient only when that is not exactly 1)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss, g = softmax_cross_entropy(logits.detach().numpy(), labels.numpy())
        ctx.save_for_backward(torch.from_numpy(g))
        return torch.from_numpy(loss)

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        (g,) = ctx.saved_tensors
        if bool(torch.all(grad_loss == 1.0)):
            return g, None
        return g * grad_loss[:, None], None


def device_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample losses [N] (float32) whose gradient is the device's."""
    return DeviceCrossEntropy.apply(logits, labels)
