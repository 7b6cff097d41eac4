"""The device's backward kernels in torch: the simulator's gradients, batched, bit for bit.

Each function computes, for every sample of a batch independently, exactly the float32 value
the generated C computes for that sample (and ``interp/training.py``, ``interp/window_ops.py``,
which it matches): the same products, associated the same way (``(g * s_w[c]) * w_q``, not
``g * (s_w[c] * w_q)``; ``s_x * sum g * (x - z)``, not ``sum g * (s_x * (x - z))``) and added in
the C kernels' order, which ``runtime/include/mt_runtime.h`` documents per kernel. A float32 sum
is only reproducible in its own order, so every running sum here is a Python loop over the
summed index, vectorised across everything that does not share an accumulator (samples,
channels, positions); nothing goes through torch's reductions, convolutions or matmuls, whose
order is their own (blocked, pairwise, fused multiply-adds). Parameter gradients come back per
sample ([N, ...]); the caller adds the samples up (at batch 1, the device's step, that adds
nothing).

Shapes are the IR's: NHWC activations, OHWI weights, float32 gradients; ``w_q`` and ``x_q``
are int64 codes. Geometry: ``stride`` (sh, sw), ``padding`` (top, left, bottom, right).
"""

from __future__ import annotations

import torch

F32 = torch.float32


def _f32(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F32)


def sample_sum(per_sample: torch.Tensor) -> torch.Tensor:
    """The samples' gradients added in order, from the first (at batch 1: the sample's own, bit for bit,
    -0.0 included, as the device's accumulation buffer would hold it)."""
    total = per_sample[0]
    for i in range(1, per_sample.shape[0]):
        total = total + per_sample[i]
    return total


def mask_grad(g: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """MASK_GRAD: g where the clamp let the value through, +0.0 elsewhere (not g * 0, which is -0 for g < 0)."""
    return torch.where(keep, g, torch.zeros((), dtype=g.dtype))


def bias_grad(g: torch.Tensor) -> torch.Tensor:
    """BIAS_GRAD: per sample, sum of g over the positions in row-major order, from +0.0. [N, C]."""
    rows = g.reshape(g.shape[0], -1, g.shape[-1])
    acc = torch.zeros(rows.shape[0], rows.shape[2], dtype=F32)
    for s in range(rows.shape[1]):
        acc = acc + rows[:, s]
    return acc


def fc_grad_input(g: torch.Tensor, w_q: torch.Tensor, w_scales: torch.Tensor) -> torch.Tensor:
    """FC_GRAD_INPUT: gs = g * s_w[o]; dx = sum over o ascending of gs[o] * w_q[o]. g [N, O] -> [N, F]."""
    gs = g * w_scales
    w = w_q.to(F32)
    out = torch.zeros(g.shape[0], w.shape[1], dtype=F32)
    for o in range(w.shape[0]):
        out = out + gs[:, o, None] * w[o]
    return out


def fc_grad_weight(g: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """FC_GRAD_WEIGHT: g[o] * x_real[f] (one product each, no sum). [N, O, F]."""
    return g[:, :, None] * x_real[:, None, :]


def conv_grad_input(g: torch.Tensor, w_q: torch.Tensor, w_scales: torch.Tensor, in_hw: tuple[int, int],
                    stride, padding, groups: int) -> torch.Tensor:
    """CONV2D_GRAD_INPUT: gs = g * s_w[oc]; each input element adds gs[oy, ox, oc] * w_q[oc, ky, kx, ic]
    in (oy, ox, oc) ascending order. For one element, oy ascending is ky descending, so the loop runs
    ky, kx descending then oc ascending, vectorised over positions (as ``interp/training.py``)."""
    n, oh, ow, c_out = g.shape
    _, kh, kw, per_group = w_q.shape
    h, w = in_hw
    sh, sw = stride
    top, left, bottom, right = padding
    c_in = per_group * groups
    gs = g * w_scales
    wf = w_q.to(F32)
    pad = torch.zeros(n, h + top + bottom + sh, w + left + right + sw, c_in, dtype=F32)
    depthwise = groups == c_in == c_out and per_group == 1
    out_per_group = c_out // groups
    for ky in reversed(range(kh)):
        for kx in reversed(range(kw)):
            view = pad[:, ky: ky + oh * sh: sh, kx: kx + ow * sw: sw]
            if depthwise:
                view += gs * wf[:, ky, kx, 0]
                continue
            for oc in range(c_out):
                gi = oc // out_per_group
                view[..., gi * per_group:(gi + 1) * per_group] += gs[..., oc, None] * wf[oc, ky, kx]
    return pad[:, top: top + h, left: left + w].contiguous()


def conv_grad_weight(g: torch.Tensor, x_q: torch.Tensor, x_zero: int, x_scale: float, kernel: tuple[int, int],
                     stride, padding, groups: int, rows: list[int]) -> torch.Tensor:
    """CONV2D_GRAD_WEIGHT of the output channels ``rows``: acc = sum over (oy, ox) ascending of
    g[oy, ox, oc] * (x - z)[oy*sh + ky - top, ox*sw + kx - left, ic] (zero outside the image), then
    acc * s_x. [N, len(rows), kh, kw, per_group]."""
    n, oh, ow, c_out = g.shape
    c_in = x_q.shape[3]
    kh, kw = kernel
    sh, sw = stride
    top, left, bottom, right = padding
    per_group = c_in // groups
    out_per_group = c_out // groups
    xs = torch.nn.functional.pad((x_q - x_zero).to(F32), (0, 0, left, right + sw, top, bottom + sh))
    firsts = [(oc // out_per_group) * per_group for oc in rows]
    if groups == 1:
        xg = xs[:, :, :, None, :]  # every row reads every input channel
    else:  # [N, Hp, Wp, K, per_group]: the input channels of each row's group
        cols = torch.tensor([[f + i for i in range(per_group)] for f in firsts], dtype=torch.int64)
        xg = xs[:, :, :, cols]
    gk = g[..., rows]
    acc = torch.zeros(n, len(rows), kh, kw, per_group, dtype=F32)
    for oy in range(oh):
        for ox in range(ow):
            patch = xg[:, oy * sh: oy * sh + kh, ox * sw: ox * sw + kw].permute(0, 3, 1, 2, 4)
            acc = acc + gk[:, oy, ox, :, None, None, None] * patch
    return acc * _f32(x_scale)


def _window_grad(spread: torch.Tensor, in_hw, filt, stride, padding) -> torch.Tensor:
    """Add per-output, per-window-offset contributions ``spread`` [N, OH, OW, fh, fw, C] into the
    input in ascending output order: for one input pixel that is window offsets (ky, kx) descending."""
    n, oh, ow, fh, fw, c = spread.shape
    h, w = in_hw
    sh, sw = stride
    top, left, bottom, right = padding
    pad = torch.zeros(n, h + top + bottom + sh + fh, w + left + right + sw + fw, c, dtype=F32)
    for ky in reversed(range(fh)):
        for kx in reversed(range(fw)):
            pad[:, ky: ky + oh * sh: sh, kx: kx + ow * sw: sw] += spread[:, :, :, ky, kx]
    return pad[:, top: top + h, left: left + w].contiguous()


def avg_pool2d_grad(g: torch.Tensor, counts: torch.Tensor, in_hw, filt, stride, padding) -> torch.Tensor:
    """AVG_POOL2D_GRAD: share = g[oy, ox] / n (float32, n the forward's divisor, ``counts`` [OH, OW]),
    added to every pixel of the output's window, outputs ascending. g [N, OH, OW, C] -> [N, H, W, C]."""
    share = g / counts.to(F32)[None, :, :, None]
    fh, fw = filt
    spread = share[:, :, :, None, None, :].expand(-1, -1, -1, fh, fw, -1)
    return _window_grad(spread, in_hw, filt, stride, padding)


def max_pool2d_grad(g: torch.Tensor, first: torch.Tensor, in_hw, filt, stride, padding) -> torch.Tensor:
    """MAX_POOL2D_GRAD: g[oy, ox] added to its window's first maximum, outputs ascending. ``first``
    [N, OH, OW, C] is the window offset ky * fw + kx of that maximum."""
    fh, fw = filt
    offsets = torch.arange(fh * fw).reshape(1, 1, 1, fh, fw, 1)
    hit = first[:, :, :, None, None, :] == offsets
    spread = torch.where(hit, g[:, :, :, None, None, :], torch.zeros((), dtype=F32))
    return _window_grad(spread, in_hw, filt, stride, padding)


def global_avg_pool_grad(g: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """AVG_POOL_GRAD (global): g / float32(h * w) to every pixel. g [N, 1, 1, C] -> [N, H, W, C]."""
    h, w = hw
    return (g / _f32(float(h * w))).expand(-1, h, w, -1)
