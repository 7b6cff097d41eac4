"""The microtrain C runtime and its Python twins (the arithmetic layer, below the executors).

C sources live in ``include/`` (``mt_runtime.h``: every public declaration) and
``src/<family>/<function>.c``. ``twins.py`` holds the IR -> kernel-parameter translation
and the compile-time multipliers every executor uses; ``rounding.py`` the on-device update
rule; ``cbind.py`` builds the runtime as a host shared library and binds it with ctypes
(used by the tests and by anyone who wants to call a kernel from Python). The twins of the
buffer-size queries are shape arithmetic and live in ``ir/buffer_sizes.py``.
"""
