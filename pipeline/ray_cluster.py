"""Joining Ray: a local in-process Ray by default, a running cluster by address (token
authentication: RAY_AUTH_TOKEN), with errors that name the address; and the log lines of the
work that runs on it."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable

from pipeline.errors import ConfigError
from pipeline.process import reinstall_signal_handlers

Log = Callable[[str], None]


def log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _reachable(address: str, source: str = "--address") -> None:
    """Fail fast, naming the address, instead of Ray's long retry loop."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{source} {address!r}: expected HOST:PORT (e.g. 10.0.0.1:6379) "
                          "or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"{source} {address}: no Ray cluster answers there ({exc.strerror or exc}). Start "
            "one with `ray start --head --port PORT` (the recipe: docs/search.md), or "
            "omit --address (and RAY_ADDRESS) for a local Ray on this machine") from None


def connect(address: str | None, log: Log) -> bool:
    """Connect to Ray; True if this call started it (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    try:
        return _connect(address, log)
    finally:
        reinstall_signal_handlers()  # ray.init sets its own SIGTERM handler (sys.exit)


def _connect(address: str | None, log: Log) -> bool:
    import ray

    source = "--address"
    if not address and os.environ.get("RAY_ADDRESS"):
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    quiet = {"logging_level": "WARNING", "log_to_driver": False}
    if address is None:
        log("starting a local Ray on this machine (no --address / RAY_ADDRESS)")
        # "local": a new Ray, never a cluster that `ray start` left running (or dead) here
        ray.init(address="local", include_dashboard=False, **quiet)
        return True
    _reachable(address, source)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError) as exc:
        raise ConfigError(
            f"{source} {address}: could not join the Ray cluster ({exc}). If it uses token "
            "authentication (Ray's default), export RAY_AUTH_TOKEN=$(ray get-auth-token) from "
            "the head node first") from None
    log(f"joined the Ray cluster at {address}: {ray.cluster_resources().get('CPU', 0):.0f} "
        f"CPUs, {ray.cluster_resources().get('GPU', 0):.0f} GPUs")
    return True
