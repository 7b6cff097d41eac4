"""Executors of the IR: the reference interpreter (the definition of every op), its training
and batched twins. Importing the package registers the fused ops' rules (``interp/fused.py``).
"""

# registers FUSED_INVERTED_BOTTLENECK and INVERTED_BOTTLENECK_GRAD everywhere
from microtrain.interp import block_grad, fused  # noqa: F401
