"""The suite's one seeding rule: every random choice of a run is seeded by (run seed, stage, purpose)."""

from __future__ import annotations

import zlib


def derive_seed(seed: int, stage: int, purpose: str) -> int:
    """A 31-bit seed for one purpose of one stage of a run."""
    return zlib.crc32(f"{seed}:{stage}:{purpose}".encode()) & 0x7FFFFFFF
