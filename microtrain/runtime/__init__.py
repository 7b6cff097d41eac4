"""The microtrain C runtime: kernels the generated training step calls.

C sources live in ``include/`` (``mt_runtime.h``: every public declaration) and
``src/<family>/<function>.c``. ``twins.py`` holds the Python twins of the C buffer-size
queries and the IR -> kernel-parameter translation; ``cbind.py`` builds the runtime as a
host shared library and binds it with ctypes (used by the tests and by anyone who wants
to call a kernel from Python).
"""
