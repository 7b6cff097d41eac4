"""The Tiny Training Engine compiler: training graph, autodiff, pruning, reordering, memory plan.

Importing the package registers the shape rules of the training ops with the IR verifier.
``pipeline.compile_training`` is the entry point.
"""

from microtrain.compiler import training_ops  # noqa: F401  (registers shape rules)
