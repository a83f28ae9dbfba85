"""Seeds for separate purposes, derived from one seed so that they stay independent."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *names: str) -> int:
    """A seed for one purpose (minibatch sampling, augmentation, a method's own draws),
    independent of the others: the first 32 bits of sha256("seed:name:...")."""
    digest = hashlib.sha256(":".join([str(seed), *names]).encode()).hexdigest()
    return int(digest[:8], 16)
