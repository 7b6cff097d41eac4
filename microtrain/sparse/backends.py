"""Where independent jobs run: ``serial`` (this process), ``local`` (a process pool on this
machine) or ``ray`` (a Ray cluster; ``ray.init()`` starts a local one when none is running).

``WorkerPool(backend, workers, init, init_arg)`` runs ``fn(state, item)`` for many items,
where ``state = init(init_arg)`` is built once per worker process (e.g. the model, the data
and the activations of the frozen prefix) and reused for every item that worker runs.
``fn``/``init`` must be module-level functions (they are pickled to the workers). Results
come back as ``(index, result)`` in completion order. Every worker uses one torch thread,
so results do not depend on the backend or on the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

BACKENDS = ("serial", "local", "ray")

_STATE: dict[int, Any] = {}  # per worker process: init token -> state


def default_workers() -> int:
    return os.cpu_count() or 1


def _init_local(init: Callable, init_arg: Any, token: int) -> None:
    import torch

    torch.set_num_threads(1)
    _STATE[token] = init(init_arg)


def _call_local(fn: Callable, token: int, item: Any) -> Any:
    return fn(_STATE[token], item)


def _call_ray(fn: Callable, init: Callable, init_arg: Any, token: int, item: Any) -> Any:
    import torch

    torch.set_num_threads(1)
    if token not in _STATE:  # Ray reuses worker processes: build the state once per process
        _STATE.clear()
        _STATE[token] = init(init_arg)
    return fn(_STATE[token], item)


class WorkerPool:
    def __init__(self, backend: str, workers: int | None, init: Callable[[Any], Any], init_arg: Any,
                 token: int | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        self.workers = max(1, workers or default_workers())
        self.backend = "serial" if backend == "local" and self.workers == 1 else backend
        self.init, self.init_arg = init, init_arg
        self.token = token if token is not None else id(init_arg)
        self._executor: ProcessPoolExecutor | None = None
        self._state: Any = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        items = list(items)
        if not items:
            return
        if self.backend == "serial":
            if self._state is None:
                self._state = self.init(self.init_arg)
            for i, item in enumerate(items):
                yield i, fn(self._state, item)
        elif self.backend == "local":
            yield from self._map_local(fn, items)
        else:
            yield from self._map_ray(fn, items)

    def _map_local(self, fn: Callable, items: list) -> Iterator[tuple[int, Any]]:
        if self._executor is None:
            # spawn: workers start clean (no forked torch thread pools or locks)
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_init_local,
                                                 initargs=(self.init, self.init_arg, self.token))
        futures = {self._executor.submit(_call_local, fn, self.token, item): i for i, item in enumerate(items)}
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    yield futures[f], f.result()
        finally:
            for f in pending:
                f.cancel()

    def _map_ray(self, fn: Callable, items: list) -> Iterator[tuple[int, Any]]:
        try:
            import ray
        except ImportError:
            raise RuntimeError("the ray backend needs Ray: pip install 'microtrain[ray]'") from None
        if not ray.is_initialized():
            # An existing cluster (RAY_ADDRESS) is joined; else a local instance with `workers` CPUs.
            kw = {} if os.environ.get("RAY_ADDRESS") else {"num_cpus": self.workers}
            ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, **kw)
        task = ray.remote(num_cpus=1)(_call_ray)
        arg_ref = ray.put(self.init_arg)
        refs = {task.remote(fn, self.init, arg_ref, self.token, item): i for i, item in enumerate(items)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield refs[ref], ray.get(ref)
