"""One writer per output: a lock on every output directory or file a command writes.

Two commands started on the same ``--out`` (two terminals, a common slip) would otherwise
write each other's trials table and Optuna study. The lock is an OS file lock (``filelock``,
``flock`` on POSIX): the kernel releases it when its holder dies, however it dies, so a lock
whose holder is gone is never mistaken for a live one. The lock file holds who took it (host,
pid, start time, command), for the error a second writer gets, and is emptied on a clean
release; a non-empty lock file found free is a stale lock, taken over with a message.

    DIR/.lock          for an output directory (a search, environments being built)
    PARENT/.NAME.lock  for an output file (an evaluation's result)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.errors import ConfigError


class OutputLocked(ConfigError):
    """Another process writes this output now (exit status 2, like every bad-input error)."""


def lock_path(out: Path | str) -> Path:
    """The lock of output ``out``: inside it when it is (or will be) a directory."""
    out = Path(out)
    if out.suffix and not out.is_dir():  # a file output: results/evaluate/X.json
        return out.with_name(f".{out.name}.lock")
    return out / ".lock"


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
            "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join(sys.orig_argv)}  # as typed: python -m ...


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started "
            f"{holder.get('started_at')}: {holder.get('command')}")


def _read_holder(path: Path) -> dict | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"command": text.strip()[:200]}


@contextmanager
def output_lock(out: Path | str, what: str, log: Callable[[str], None] | None = None):
    """Hold the lock of ``out`` for the block; an :class:`OutputLocked` error at once if another
    process holds it (nothing written). ``what`` names the output in messages (e.g. "--out").

    A directory output is created here if missing. If the block fails, a lock file (and an
    empty directory) created here is removed again: a failed command changes nothing.
    """
    out = Path(out)
    path = lock_path(out)
    created_dir, created_lock = not path.parent.exists(), not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _read_holder(path)
        held_by = _describe(holder) if holder else "a process that has not yet said who it is"
        raise OutputLocked(
            f"{what} {out} is being written by another process ({held_by}); wait for it to "
            f"finish, stop it, or use another {what}. Nothing was changed "
            f"(lock file: {path})") from None
    try:
        stale = _read_holder(path)
        if stale and log is not None:
            log(f"{what} {out}: took over the lock left by {_describe(stale)}, which is no "
                "longer running")
        path.write_text(json.dumps(_holder()) + "\n")
        yield path
    except BaseException:
        if created_lock:  # a failed command leaves things as they were
            path.unlink(missing_ok=True)
            if created_dir and path.parent == out and not any(out.iterdir()):
                out.rmdir()
        raise
    finally:
        if path.exists():
            path.write_text("")  # a clean release: an empty lock file
        lock.release()
