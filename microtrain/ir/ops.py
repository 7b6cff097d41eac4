"""The closed set of operations of the microtrain IR.

Every node of every Graph has one of these ops. Per-op behaviour (shape inference,
evaluation, simulation, gradients, C emission, buffer size, cost) lives in rule tables keyed
by ``Op``, one table per kind of rule, all named by the op registry ``ir/registry.py`` (which
also says how to add an op); ``tests/test_rule_tables.py`` checks that each table covers
every op or names it as exempt.

One line per op says what it computes. Shapes are NHWC for activations and OHWI for
weights (``I`` = input channels per group). ``q(x)`` is the int8 value of ``x``,
``s``/``z`` its scale and zero point; real value = ``s * (q - z)``.

Forward, integer (inference and the forward half of training):
  CONV2D           y = clamp(requant(sum w*(x - z_x) + b) + z_y, act_min, act_max);
                   inputs (x int8 [1,H,W,C], w int8 [O,kh,kw,C/groups], b int32 [O]);
                   attrs stride=(sh,sw), padding=(top,left,bottom,right), groups,
                   act_min, act_max. Depthwise is groups == C == O.
  FULLY_CONNECTED  the same with x [1,C], w [O,C], b [O]; y [1,O].
  ADD              y = clamp(requant(s_a(a - z_a) + s_b(b - z_b)) + z_y) (TFLite int8 ADD).
  GLOBAL_AVG_POOL  y[1,1,1,C] = requant(sum_hw (x - z_x), M) + z_y, M from attrs rule:
                   "multiplier" (default) M = s_x / (s_y * H * W) quantized once; "tflm" (TFLM's
                   MEAN) s_x / s_y quantized, then its multiplier divided by H * W in integers.
  RESHAPE          y = x with attrs shape; quantization unchanged.
  The window and copy ops below are TFLite Micro's int8 kernels (definitions in
  ``interp/window_ops.py`` and ``quant.py``); input and output share one quantization
  except for SOFTMAX:
  AVG_POOL2D       y[oy,ox,c] = clamp(round(sum x / n)) over the window of attrs filter=(fh,fw),
                   stride, padding=(top,left,bottom,right) clipped to the input, n = pixels in it
                   (attrs count_include_pad: fh*fw), halves away from zero; act_min, act_max.
  MAX_POOL2D       y[oy,ox,c] = clamp(max x) over the same clipped window.
  PAD              y = x placed at offset attrs pads[d][0] of every axis, attrs pad_value elsewhere;
                   pads = ((before, after) per axis, batch (0, 0)).
  CONCAT           y = the inputs side by side along attrs axis (all one quantization).
  SOFTMAX          int8 softmax over the last axis in TFLM's fixed point (attrs beta); y has
                   scale 1/256 and zero point -128. Only at a graph's output: training takes the
                   logits before it.

Float (loss and training; fp32 unless noted):
  DEQUANTIZE       y = (float)(q - z) * float32(s) in float32, int8 -> float32, same shape.
  SOFTMAX_CROSS_ENTROPY
                   inputs (logits f32 [1,K], label int32 [1]) -> loss f32 [1]:
                   -log softmax(logits)[label].
  MEAN_SQUARED_ERROR
                   inputs (prediction f32 [1,N], target int8 [1,N]) -> loss f32 [1]: the
                   reconstruction loss of an autoencoder, sum_i (p_i - t_i)^2 / N with t the
                   dequantized target (the model's int8 input), summed in order in float32.

Training (appended by the compiler, one place, one enum; see ``microtrain/compiler``).
Gradients are fp32 and taken w.r.t. the *real* value of a tensor (s * (q - z)); int8
operands are dequantized inside the op. Shape rules in ``ir/shapes_training.py``.
  LOSS_GRAD        (logits f32 [1,K], label int32 [1]) -> dlogits = softmax(logits) - onehot.
  MSE_GRAD         (prediction f32 [1,N], target int8 [1,N]) -> dp = (p - t) * (2/N).
  CLAMP_MASK       (y int8) -> uint8 [ceil(n/8)], bit i = act_min < y[i] < act_max (LSB first).
  MASK_GRAD        (g f32, mask uint8) -> g * bit(mask): the clamp derivative, in place.
  CONV2D_GRAD_INPUT (g f32 [1,OH,OW,O], w int8) -> dx f32 [1,H,W,C] (transposed conv).
  CONV2D_GRAD_WEIGHT (g f32 [1,OH,OW,O], x int8 [1,H,W,Cx]) -> dw f32 [K,kh,kw,I] for the
                   K output channels in attrs channels; x holds only the input channels
                   they read (attrs x_channels, None = all).
  FC_GRAD_INPUT    (g f32 [1,O], w int8 [O,C]) -> dx f32 [1,C].
  FC_GRAD_WEIGHT   (g f32 [1,O], x int8 [1,C]) -> dw f32 [K,C] for attrs channels.
  BIAS_GRAD        (g f32 [1,...,O]) -> db f32 [O]: sum over all but the last axis.
  AVG_POOL_GRAD    (g f32 [1,1,1,C]) -> dx f32 [1,H,W,C] = g / (H*W) broadcast (attrs shape).
  AVG_POOL2D_GRAD  (g f32 [1,OH,OW,C]) -> dx f32 [1,H,W,C]: each window's pixels get g / n
                   (attrs of the forward node and input_shape).
  MAX_POOL2D_GRAD  (g f32 [1,OH,OW,C], x int8 [1,H,W,C]) -> dx f32: g goes to the first maximum of
                   each window (row-major window order).
  PAD_GRAD         (g f32 padded) -> dx f32: the inner block (attrs pads).
  CONCAT_GRAD      (g f32) -> dx f32: the slice [offset, offset + size) along attrs axis.
  GRAD_ACCUMULATE  (a f32, b f32) -> a + b (fan-out of a forward tensor), in place into a.
  SLICE_CHANNELS   (x int8 [1,H,W,C]) -> x[..., attrs channels] (a saved sub-tensor).
  UPDATE_WEIGHT    (w int8, dw f32 [K,...], lr f32 [1]) -> w updated in place on attrs channels:
                   w = sat127(round((float)w - (lr*dw) * f_c)) (QAS factors f_c in attrs).
  UPDATE_BIAS      (b int32, db f32 [O], lr f32 [1]) -> b updated in place, same rule, int32.

Fused (appended by ``compiler/fuse_frozen_blocks.py``; definition in ``ir/fused_blocks.py``):
  FUSED_INVERTED_BOTTLENECK
                   (x, [w_e, b_e,] w_d, b_d, w_p, b_p) -> (y, scratch int8 [n]): a frozen block
                   [expand CONV2D ->] depthwise CONV2D -> 1x1 CONV2D [-> ADD(x)], bit-exact with
                   those ops (attrs hold theirs), run row by row through a ring buffer (scratch).

Fused backward (appended by ``compiler/stream_block_grads.py``; definition in ``ir/block_grads.py``):
  INVERTED_BOTTLENECK_GRAD
                   (g f32, w_p, mask_d, w_d, mask_e, w_e[, x]) -> ([dw_e row], [dx], [db_d], [db_e], scratch):
                   the backward through expand 1x1 -> depthwise -> project 1x1 from the projection's
                   masked output gradient g, one expanded channel at a time (attrs keep the original
                   backward nodes); w_e's kept rows are updated in place inside (chunk 1).
"""

from __future__ import annotations

import enum


class Op(enum.Enum):
    # forward, integer
    CONV2D = "conv2d"
    FULLY_CONNECTED = "fully_connected"
    ADD = "add"
    GLOBAL_AVG_POOL = "global_avg_pool"
    RESHAPE = "reshape"
    AVG_POOL2D = "avg_pool2d"
    MAX_POOL2D = "max_pool2d"
    PAD = "pad"
    CONCAT = "concat"
    SOFTMAX = "softmax"
    # float
    DEQUANTIZE = "dequantize"
    SOFTMAX_CROSS_ENTROPY = "softmax_cross_entropy"
    MEAN_SQUARED_ERROR = "mean_squared_error"
    # ---- training: backward (fp32) and update ops, appended by the compiler --------------
    LOSS_GRAD = "loss_grad"
    MSE_GRAD = "mse_grad"
    CLAMP_MASK = "clamp_mask"
    MASK_GRAD = "mask_grad"
    CONV2D_GRAD_INPUT = "conv2d_grad_input"
    CONV2D_GRAD_WEIGHT = "conv2d_grad_weight"
    FC_GRAD_INPUT = "fc_grad_input"
    FC_GRAD_WEIGHT = "fc_grad_weight"
    BIAS_GRAD = "bias_grad"
    AVG_POOL_GRAD = "avg_pool_grad"
    AVG_POOL2D_GRAD = "avg_pool2d_grad"
    MAX_POOL2D_GRAD = "max_pool2d_grad"
    PAD_GRAD = "pad_grad"
    CONCAT_GRAD = "concat_grad"
    GRAD_ACCUMULATE = "grad_accumulate"
    SLICE_CHANNELS = "slice_channels"
    UPDATE_WEIGHT = "update_weight"
    UPDATE_BIAS = "update_bias"
    # ---- fused: frozen blocks run row by row (compiler/fuse_frozen_blocks.py) --------------
    FUSED_INVERTED_BOTTLENECK = "fused_inverted_bottleneck"
    # ---- fused backward: one inverted-bottleneck block, channel by channel (compiler/stream_block_grads.py)
    INVERTED_BOTTLENECK_GRAD = "inverted_bottleneck_grad"


# Property groups, in the tinygrad manner: sets of ops that share a behaviour.
INT8_OPS = frozenset({Op.CONV2D, Op.FULLY_CONNECTED, Op.ADD, Op.GLOBAL_AVG_POOL, Op.RESHAPE,
                      Op.AVG_POOL2D, Op.MAX_POOL2D, Op.PAD, Op.CONCAT, Op.SOFTMAX,
                      Op.FUSED_INVERTED_BOTTLENECK})
"""Ops of an int8 inference graph: what the importers produce and the interpreter runs."""

WEIGHTED_OPS = frozenset({Op.CONV2D, Op.FULLY_CONNECTED})
"""Ops with (input, weight, bias) operands whose weight and bias may be trained."""

FLOAT_OPS = frozenset({Op.DEQUANTIZE, Op.SOFTMAX_CROSS_ENTROPY, Op.MEAN_SQUARED_ERROR})

LOSS_OPS = frozenset({Op.SOFTMAX_CROSS_ENTROPY, Op.MEAN_SQUARED_ERROR})
"""The training losses: the forward pass ends at the graph's one loss node."""

VIEW_OPS = frozenset({Op.RESHAPE})
"""Ops that reinterpret their input's bytes: the output keeps the input's quantization."""

SAME_QUANT_OPS = VIEW_OPS | frozenset({Op.AVG_POOL2D, Op.MAX_POOL2D, Op.PAD, Op.CONCAT})
"""Ops whose int8 output keeps the quantization of every input (they move or pick int8 values)."""

TRAINING_OPS = frozenset({
    Op.LOSS_GRAD, Op.MSE_GRAD, Op.CLAMP_MASK, Op.MASK_GRAD, Op.CONV2D_GRAD_INPUT, Op.CONV2D_GRAD_WEIGHT,
    Op.FC_GRAD_INPUT, Op.FC_GRAD_WEIGHT, Op.BIAS_GRAD, Op.AVG_POOL_GRAD, Op.GRAD_ACCUMULATE,
    Op.SLICE_CHANNELS, Op.UPDATE_WEIGHT, Op.UPDATE_BIAS, Op.INVERTED_BOTTLENECK_GRAD,
    Op.AVG_POOL2D_GRAD, Op.MAX_POOL2D_GRAD, Op.PAD_GRAD, Op.CONCAT_GRAD})
"""Ops the compiler adds for the backward pass and the in-place update (fp32 unless noted)."""

UPDATE_OPS = frozenset({Op.UPDATE_WEIGHT, Op.UPDATE_BIAS})
"""Ops that write a trainable tensor in place."""
