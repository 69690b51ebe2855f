"""Power by design: how many seeds a comparison needs for a minimum detectable effect.

A paired comparison over S seeds whose per-seed differences have standard deviation sd has
SE = sd / sqrt(S), and detects a true effect with about 80 % power at level 1 - a when the effect
reaches mde = (t_{1 - a/2, S - 1} + t_{0.80, S - 1}) SE (`paired.mde`). Before a study trains,
a pilot SD per size gives the seeds a target mde needs; after it, a comparison's own SE gives
the seeds an mde of one margin would have needed. Mathematics only.
"""

from __future__ import annotations

import math

from .paired import POWER, mde

FAMILY_ALPHA = 0.05  # family-wise error over the paper's claims (Holm)
FAMILY_SIZE = 8  # C1, C2, C3, C4, C4b, C4p, C5, H1 (`claims.FAMILY_IDS`, a test keeps them equal)
# the strictest level a one-part claim is judged at: Holm's first step over the eight claims
DESIGN_LEVEL = 1.0 - FAMILY_ALPHA / FAMILY_SIZE


def design_mde(sd: float, seeds: int, level: float = DESIGN_LEVEL, power: float = POWER
               ) -> float:
    """The mde of a paired comparison over `seeds` seeds whose differences have SD `sd`."""
    if seeds < 2:
        return math.inf
    return mde(sd / math.sqrt(seeds), seeds - 1, level, power)


def seeds_for(sd: float, target: float, level: float = DESIGN_LEVEL, power: float = POWER,
              most: int = 100_000) -> int | None:
    """The fewest seeds (>= 2) whose `design_mde` is at most `target`; None if more than
    `most` would be needed."""
    if not target > 0:
        raise ValueError(f"a target mde must be > 0, got {target!r}")
    if design_mde(sd, most, level, power) > target:
        return None
    lo, hi = 2, most  # design_mde falls with the seeds: bisect for the first that reaches it
    while lo < hi:
        mid = (lo + hi) // 2
        if design_mde(sd, mid, level, power) <= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def seeds_needed(se: float | None, seeds: int, level: float, target: float,
                 power: float = POWER, most: int = 100_000) -> int | None:
    """The seeds a comparison with standard error `se` over `seeds` seeds would have needed for
    an mde of `target` at `level` (its SD estimated as se sqrt(seeds)); None without an SE or
    beyond `most`."""
    if se is None or seeds < 2 or not math.isfinite(se):
        return None
    return seeds_for(se * math.sqrt(seeds), target, level, power, most)
