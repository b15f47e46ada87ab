"""The one backoff: how long to wait before trying again, for every retry in the operator."""

from __future__ import annotations

import random

# -- retries --------------------------------------------------------------------------------------
_RNG = random.Random()


def backoff(retry: int, base: float, cap: float, rng: random.Random = _RNG) -> float:
    """The operator's one backoff: capped exponential with *equal* jitter, a delay drawn uniformly
    from the upper half of min(cap, base * 2**retry), so never 0 (no hammering) and never above cap."""
    ceiling = min(cap, base * 2 ** max(retry, 0))
    return ceiling * (0.5 + rng.random() / 2)
