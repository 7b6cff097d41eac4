"""Run a built program and capture its output, optionally line by line as it prints.

``run_program`` is ``subprocess.run(cmd, capture_output=True, text=True, timeout=...)`` with
one addition: ``on_line`` is called with each stdout line as soon as it is printed, so that a
caller can show progress (one tick per ``step`` line of the driver) during a long device run.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path


def run_program(cmd: list[str], cwd: str | Path, timeout: float, on_line: Callable[[str], None] | None = None,
                stdin=None) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd``; raises subprocess.TimeoutExpired after ``timeout`` seconds."""
    if on_line is None:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=stdin)
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=stdin)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            on_line(line.rstrip("\r\n"))
        proc.wait()
    finally:
        timer.cancel()
        reader.join()
    stdout = "".join(out)
    if timed_out.is_set():
        raise subprocess.TimeoutExpired(cmd, timeout, stdout, "".join(err))
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, "".join(err))
