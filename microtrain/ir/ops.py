"""The closed set of operations of the microtrain IR.

Every node of every Graph has one of these ops. Per-op behaviour (shape inference,
evaluation, gradients, C emission, cost) lives in rule tables keyed by ``Op`` in the
module that needs it; ``tests/test_rule_tables.py`` checks that each table covers every
op or names it as exempt.

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
  GLOBAL_AVG_POOL  y[1,1,1,C] = requant(sum_hw (x - z_x), s_x / (s_y * H * W)) + z_y.
  RESHAPE          y = x with attrs shape; quantization unchanged.

Float (loss and training; fp32 unless noted):
  DEQUANTIZE       y = s * (q - z), int8 -> float32, same shape.
  SOFTMAX_CROSS_ENTROPY
                   inputs (logits f32 [1,K], label int32 [1]) -> loss f32 [1]:
                   -log softmax(logits)[label].

Ops the compiler adds for the backward graph and the update are appended to this enum
by the compiler (one place, one enum); see ``microtrain/compiler``.
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
    # float
    DEQUANTIZE = "dequantize"
    SOFTMAX_CROSS_ENTROPY = "softmax_cross_entropy"


# Property groups, in the tinygrad manner: sets of ops that share a behaviour.
INT8_OPS = frozenset({Op.CONV2D, Op.FULLY_CONNECTED, Op.ADD, Op.GLOBAL_AVG_POOL, Op.RESHAPE})
"""Ops of an int8 inference graph: what the importers produce and the interpreter runs."""

WEIGHTED_OPS = frozenset({Op.CONV2D, Op.FULLY_CONNECTED})
"""Ops with (input, weight, bias) operands whose weight and bias may be trained."""

FLOAT_OPS = frozenset({Op.DEQUANTIZE, Op.SOFTMAX_CROSS_ENTROPY})
