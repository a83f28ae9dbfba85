"""Seeds for separate purposes, derived from one seed so that they stay independent."""

from __future__ import annotations

import hashlib

from pipeline.errors import ConfigError


def derive_seed(seed: int, *names: str) -> int:
    """A seed for one purpose (minibatch sampling, augmentation, a method's own draws),
    independent of the others: the first 32 bits of sha256("seed:name:...")."""
    digest = hashlib.sha256(":".join([str(seed), *names]).encode()).hexdigest()
    return int(digest[:8], 16)


def check_seeds(seeds, name: str = "seeds") -> list[int]:
    """``seeds`` as a list of ints, refused (naming ``name``) unless they are a non-empty list of
    distinct integers >= 0: the one check of every seed list (trials, evaluations, protocol)."""
    values = list(seeds) if isinstance(seeds, list | tuple | range) else None
    if (not values or any(isinstance(s, bool) or not isinstance(s, int) for s in values)
            or min(values) < 0 or len(set(values)) != len(values)):
        raise ConfigError(f"{name} = {seeds!r}: give a non-empty list of distinct integers "
                          ">= 0, e.g. [1000, 1001, 1002]")
    return [int(s) for s in values]
