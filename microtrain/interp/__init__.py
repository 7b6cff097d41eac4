"""Executors of the IR: the reference interpreter (the definition of every op), its training
and batched twins. Importing the package registers the fused ops' rules (``interp/fused.py``).
"""

from microtrain.interp import fused  # noqa: F401  (registers FUSED_INVERTED_BOTTLENECK everywhere)
