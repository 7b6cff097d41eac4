"""The public Python API, one module per verb; ``microtrain/__init__.py`` re-exports it.

``models.py`` load/save/run a model and resolve model + head + scheme (once, for every verb);
``quantize.py``, ``compile.py``, ``run.py``, ``finetune.py``, ``plan.py``, ``evaluate.py``
(evaluate, predict, inspect) each hold one verb's function and its result type. The CLI
verbs parse arguments, call these and print; docs/api.md documents them with an example.
"""
