"""A naive RFC 9162 Merkle model, straight from sections 2.1.1, 2.1.3.1 and 2.1.4.1: the reference every
generated root and proof (in memory or from a database) is compared with."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ledger.merkle import node_hash


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class NaiveTree:
    """MTH, PATH and PROOF over a fixed list of leaf hashes, by the RFC's recursive definitions (MTH memoised)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = list(leaves)
        self._mth: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi])."""
        found = self._mth.get((lo, hi))
        if found is not None:
            return found
        n = hi - lo
        if n == 0:
            value = hashlib.sha256(b"").digest()
        elif n == 1:
            value = self.leaves[lo]
        else:
            k = _k(n)
            value = node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))
        self._mth[(lo, hi)] = value
        return value

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """PATH(m, D[lo:hi]) for the leaf at offset ``m`` of the range."""
        n = hi - lo
        if n == 1:
            return []
        k = _k(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def _subproof(self, m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if whole else [self.mth(lo, hi)]
        k = _k(n)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, whole), self.mth(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[0:n]) (empty for m = 0 or m = n, as RFC 9162 verifiers expect)."""
        return [] if m in (0, n) else self._subproof(m, 0, n, True)
