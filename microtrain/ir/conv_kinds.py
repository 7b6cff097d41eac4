"""Which kind of convolution a CONV2D is: the one statement of depthwise and pointwise.

The kernels (``mt_depthwise_conv2d_*``, ``mt_pointwise_conv2d_*``), the passes that fuse or
split by kind and the executors' fast paths all ask these, so a conv is the same kind
everywhere.
"""

from __future__ import annotations

from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import Op


def depthwise(groups: int, in_channels: int, weight_shape: tuple[int, ...]) -> bool:
    """groups == input channels == output channels: one input channel per group (OHWI weight [C,kh,kw,1])."""
    return groups == in_channels == weight_shape[0] and weight_shape[3] == 1


def is_depthwise(node: Node, graph: Graph) -> bool:
    """A depthwise CONV2D node."""
    if node.op != Op.CONV2D:
        return False
    return depthwise(int(node.attrs.get("groups", 1)), graph.tensors[node.inputs[0]].shape[3],
                     graph.tensors[node.inputs[1]].shape)


def is_pointwise(node: Node, graph: Graph) -> bool:
    """A 1x1 CONV2D with stride 1, no padding and one group: a matrix product per pixel."""
    if node.op != Op.CONV2D:
        return False
    return (graph.tensors[node.inputs[1]].shape[1:3] == (1, 1) and tuple(node.attrs.get("stride", (1, 1))) == (1, 1)
            and tuple(node.attrs.get("padding", (0, 0, 0, 0))) == (0, 0, 0, 0)
            and int(node.attrs.get("groups", 1)) == 1)
