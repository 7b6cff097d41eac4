"""Executors of the IR: the reference interpreter (the definition of every op), its training
and batched twins. Their rule tables are complete as written; ``ir/registry.py`` names them.
"""
