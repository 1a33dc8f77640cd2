"""What the embedding cache and the signature cache share (scorers/embedding_cache.py,
scorers/signature_cache.py): files named `part-r<ROWS>-<DIGEST>.<ext>` merged by size tier, and
an LRU index of partition listings and per-file infos bounded in cost units."""
from __future__ import annotations

import math
from typing import Sequence

MERGE_FILES = 8  # files of one size tier merged at a time
TOP_TIER = 5  # files of 8**5 = 32,768 rows or more are not merged again
_NOT_OURS = 1 << 30


def rows_in_name(name: str) -> int:
    try:
        return int(name.split("-")[1][1:])
    except (IndexError, ValueError):
        return _NOT_OURS  # not ours: never picked as a small file to merge


def tier_to_merge(names: Sequence[str]) -> list[str]:
    """MERGE_FILES files of one size tier (rows within a factor MERGE_FILES), or [].

    Size-tiered merging: a row is rewritten once per tier it climbs (log_8 of a partition's
    rows times), and a partition holds fewer than MERGE_FILES files per tier."""
    tiers: dict[int, list[str]] = {}
    for name in names:
        rows = rows_in_name(name)
        if rows < _NOT_OURS:
            tiers.setdefault(int(math.log(max(rows, 1), MERGE_FILES)), []).append(name)
    for tier in sorted(tiers):
        if tier < TOP_TIER and len(tiers[tier]) >= MERGE_FILES:
            return sorted(tiers[tier])[:MERGE_FILES]
    return []


class BoundedIndex:
    """Mixin: `self._index` (an OrderedDict: partition -> file names, (partition, name) -> a
    file's info), `self._costs`, `self._cost` and `self.index_budget`, set by the cache's
    __init__; least recently used entries go first once the summed cost passes the budget."""

    def _remember(self, key, value, cost: int) -> None:
        self._drop(key)
        self._index[key] = value
        self._costs[key] = cost
        self._cost += cost
        while self._cost > self.index_budget and len(self._index) > 1:
            old, _ = self._index.popitem(last=False)
            self._cost -= self._costs.pop(old)

    def _drop(self, key) -> None:
        if self._index.pop(key, None) is not None:
            self._cost -= self._costs.pop(key)

    def _forget(self, partition: str) -> None:
        """Drop a partition's listing and the infos of its files (they changed)."""
        for name in self._index.get(partition) or []:
            self._drop((partition, name))
        self._drop(partition)
