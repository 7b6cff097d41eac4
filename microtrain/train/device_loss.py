"""The simulator's losses: the device's per-sample losses (``runtime/losses.py``: softmax
cross-entropy, and the mean squared reconstruction error of an autoencoder) as torch autograd
Functions whose backward returns exactly the device's output gradients, so that the simulator's
weight updates start from the same bits as the generated C's."""

from __future__ import annotations

import torch

from microtrain.runtime.losses import mean_squared_error, softmax_cross_entropy


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


class DeviceMeanSquaredError(torch.autograd.Function):
    """Per-sample reconstruction losses of ``mean_squared_error`` (the float outputs against the
    int8 targets, dequantized with ``scale``/``zero``) with the device's exact gradient."""

    @staticmethod
    def forward(ctx, pred: torch.Tensor, target_q: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
        loss, g = mean_squared_error(pred.detach().reshape(len(pred), -1).numpy(), target_q.numpy(), scale, zero)
        ctx.save_for_backward(torch.from_numpy(g).reshape(pred.shape))
        return torch.from_numpy(loss)

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        (g,) = ctx.saved_tensors
        if bool(torch.all(grad_loss == 1.0)):
            return g, None, None, None
        return g * grad_loss.reshape((-1,) + (1,) * (g.dim() - 1)), None, None, None


def device_mean_squared_error(pred: torch.Tensor, target_q: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    """Per-sample reconstruction losses [N] (float32) whose gradient is the device's."""
    return DeviceMeanSquaredError.apply(pred, target_q, scale, zero)
