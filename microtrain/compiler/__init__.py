"""The Tiny Training Engine compiler: training graph, autodiff, pruning, reordering, memory plan.

``pipeline.compile_training`` is the entry point; ``pipeline.py`` lists the passes in order.
"""
