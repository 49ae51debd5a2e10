"""RFC 9162 Merkle tree: hashing, proof verification and O(log n) proof generation from stored subtrees.

Everything here is pure. Hashes are raw 32-byte ``bytes``. Wherever a parameter is called ``leaf`` it is the
*leaf hash* (``leaf_hash(data)``, already carrying the 0x00 prefix), never the leaf input itself.

Storage model: a node is addressed ``(level, index)`` and covers leaves ``[index * 2**level, (index + 1) *
2**level)``; level 0 holds the leaf hashes. Only *complete* (perfect) subtrees are ever persisted:
``completed_nodes`` lists what becomes complete when a leaf is appended. Any RFC 9162 subtree hash, root or
proof is then assembled from O(log n) such nodes, fetched with a single ``NodeSource.nodes`` call.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from ledger.errors import InputError, NotFoundError, ProofError, StorageError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_MAX_SIZE = 2**64 - 1

NodeKey = tuple[int, int]
"""``(level, index)`` of a perfect subtree."""


# --- hashing ----------------------------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """Hash a leaf input with the RFC 9162 0x00 domain prefix, so leaves can never pose as interior nodes."""
    return hashlib.sha256(b"\x00" + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two child hashes with the RFC 9162 0x01 domain prefix."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """Compute MTH over a full list of leaf hashes; a naive O(n) reference for tests and small trees."""
    if not leaves:
        return EMPTY_ROOT
    level = [bytes(leaf) for leaf in leaves]
    # Pairing level by level and promoting a lone last node unchanged is exactly RFC 9162's MTH split.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# --- verification (RFC 9162 2.1.3.2 and 2.1.4.2) ------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_hash(what: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ProofError(f"{what} is not bytes")
    raw = bytes(value)
    if len(raw) != HASH_SIZE:
        raise ProofError(f"{what} is {len(raw)} bytes long, expected a {HASH_SIZE}-byte SHA-256 hash")
    return raw


def _check_path(path: Sequence[bytes]) -> list[bytes]:
    if isinstance(path, bytes | bytearray | str):
        raise ProofError("proof path must be a sequence of hashes, not a single byte string")
    return [_check_hash(f"proof element {i}", p) for i, p in enumerate(path)]


def verify_inclusion(*, leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> None:
    """Check that leaf hash ``leaf`` sits at ``index`` of the tree of ``size`` leaves with root ``root``.

    Note that an inclusion proof binds the size only through its shape: trust ``size`` and ``root`` only as a
    pair taken from a verified checkpoint. Raises ``ProofError`` on any failure.
    """
    if not _is_int(index) or not _is_int(size):
        raise ProofError("leaf index and tree size must be integers")
    if size <= 0 or size > _MAX_SIZE:
        raise ProofError(f"tree size {size} cannot contain a leaf")
    if index < 0 or index >= size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    leaf = _check_hash("leaf hash", leaf)
    root = _check_hash("root hash", root)
    hashes = _check_path(path)
    fn, sn = index, size - 1
    r = leaf
    for p in hashes:
        if sn == 0:
            raise ProofError(f"inclusion proof is too long ({len(hashes)} elements) for index {index}")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof is too short ({len(hashes)} elements) for index {index}, size {size}")
    if not hmac.compare_digest(r, root):
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the root of size {size}")


def verify_consistency(*, size1: int, size2: int, root1: bytes, root2: bytes, path: Sequence[bytes]) -> None:
    """Check that the tree of ``size2`` leaves (``root2``) extends the tree of ``size1`` leaves (``root1``).

    Equal sizes need an empty proof and equal roots (the empty tree's root is SHA-256 of nothing). Size 0 is
    consistent with any tree, but only with an empty proof and the empty-tree root. Raises ``ProofError``.
    """
    if not _is_int(size1) or not _is_int(size2):
        raise ProofError("tree sizes must be integers")
    if size1 < 0 or size2 > _MAX_SIZE:
        raise ProofError(f"tree sizes {size1} and {size2} are out of range")
    if size2 < size1:
        raise ProofError(f"tree size went backwards: {size1} -> {size2}")
    hashes = _check_path(path)
    if size1 == size2:
        if hashes:
            raise ProofError(f"consistency proof between equal sizes ({size1}) must be empty")
        if not isinstance(root1, bytes) or not isinstance(root2, bytes):
            raise ProofError("roots must be bytes")
        if size1 == 0 and not (hmac.compare_digest(root1, EMPTY_ROOT) and hmac.compare_digest(root2, EMPTY_ROOT)):
            raise ProofError("the root of the empty tree must be SHA-256 of the empty string")
        if not hmac.compare_digest(root1, root2):
            raise ProofError(f"two different roots for the same tree size {size1}")
        return
    root1 = _check_hash("first root", root1)
    root2 = _check_hash("second root", root2)
    if size1 == 0:
        if hashes:
            raise ProofError("consistency proof from the empty tree must be empty")
        if not hmac.compare_digest(root1, EMPTY_ROOT):
            raise ProofError("the root of the empty tree must be SHA-256 of the empty string")
        return
    if not hashes:
        raise ProofError(f"consistency proof from {size1} to {size2} is empty")
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the first node, implicitly
        hashes = [root1, *hashes]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof from {size1} to {size2} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof from {size1} to {size2} is too short")
    if not hmac.compare_digest(fr, root1):
        raise ProofError(f"consistency proof does not reproduce the root of size {size1}")
    if not hmac.compare_digest(sr, root2):
        raise ProofError(f"consistency proof does not reproduce the root of size {size2}")


# --- planning: which perfect subtrees a computation needs ---------------------------------------------------


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_size(what: str, value: int) -> None:
    if not _is_int(value) or value < 0 or value > _MAX_SIZE:
        raise InputError(f"{what} must be an integer in [0, 2**64), got {value!r}")


def perfect_subtrees(start: int, end: int) -> list[NodeKey]:
    """Decompose leaves ``[start, end)`` into maximal aligned perfect subtrees, left to right.

    For ``start == 0`` they come largest first: these are the right-edge nodes (the frontier) of the tree of
    size ``end``, and the RFC 9162 hash of the range is their right fold with ``node_hash``.
    """
    _check_size("range start", start)
    _check_size("range end", end)
    if end < start:
        raise InputError(f"range [{start}, {end}) is reversed")
    out: list[NodeKey] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        out.append((level, start >> level))
        start += 1 << level
    return out


def frontier_keys(size: int) -> list[NodeKey]:
    """Keys to read to load the frontier (right-edge perfect subtree roots) of the tree of ``size`` leaves."""
    return perfect_subtrees(0, size)


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PATH(index, D[0:size]), in proof order (bottom up)."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def _consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PROOF(size1, D[0:size2]) for 0 < size1 < size2, in proof order."""
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, size2, size1, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


# --- generation against a node store ------------------------------------------------------------------------


class NodeSource(Protocol):
    """Where persisted perfect-subtree hashes live (a database table, a dict)."""

    def nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        """Return the stored hash of every key asked for, in one batched lookup; may omit absent keys."""
        ...


#: Keys per ``NodeSource.nodes`` call: a proof (at most ~2 log2 n keys) is one call; large batches are split so
#: one query stays small (SQLite refuses expressions deeper than 1000 terms).
FETCH_BATCH = 128


def read_nodes(source: NodeSource, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
    """The stored hashes of ``keys`` (absent ones omitted), in batches of ``FETCH_BATCH`` keys per call."""
    wanted = sorted(set(keys))
    got: dict[NodeKey, bytes] = {}
    for start in range(0, len(wanted), FETCH_BATCH):
        got.update(source.nodes(wanted[start : start + FETCH_BATCH]))
    return got


def _fetch(source: NodeSource, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
    wanted = sorted(set(keys))
    got = read_nodes(source, wanted)
    out: dict[NodeKey, bytes] = {}
    for key in wanted:
        value = got.get(key)
        if value is None:
            raise StorageError(f"merkle node (level {key[0]}, index {key[1]}) is missing from the store")
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise StorageError(f"merkle node (level {key[0]}, index {key[1]}) in the store is not a 32-byte hash")
        out[key] = value
    return out


def _fold(keys: Sequence[NodeKey], hashes: Mapping[NodeKey, bytes]) -> bytes:
    """RFC 9162 hash of a range from its perfect parts: a right fold, as the left part is always perfect."""
    acc = hashes[keys[-1]]
    for key in reversed(keys[:-1]):
        acc = node_hash(hashes[key], acc)
    return acc


def _range_hashes(source: NodeSource, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    plans = [perfect_subtrees(lo, hi) for lo, hi in ranges]
    hashes = _fetch(source, (key for plan in plans for key in plan))
    return [_fold(plan, hashes) for plan in plans]


def root(source: NodeSource, size: int) -> bytes:
    """Root hash of the tree of the first ``size`` leaves, from at most log2(size)+1 stored nodes."""
    _check_size("tree size", size)
    if size == 0:
        return EMPTY_ROOT
    return _range_hashes(source, [(0, size)])[0]


def inclusion_proof(source: NodeSource, index: int, size: int) -> list[bytes]:
    """Audit path (RFC 9162 PATH) for leaf ``index`` in the tree of ``size`` leaves, in O(log n) reads."""
    _check_size("tree size", size)
    _check_size("leaf index", index)
    if index >= size:
        raise NotFoundError(f"leaf {index} is not in a tree of size {size}")
    return _range_hashes(source, _inclusion_ranges(index, size))


def consistency_proof(source: NodeSource, size1: int, size2: int) -> list[bytes]:
    """Consistency proof (RFC 9162 PROOF) that tree ``size2`` extends tree ``size1``, in O(log n) reads.

    Empty when ``size1`` is 0 or equals ``size2``, as ``verify_consistency`` expects.
    """
    _check_size("first tree size", size1)
    _check_size("second tree size", size2)
    if size1 > size2:
        raise InputError(f"cannot prove consistency backwards, from size {size1} to {size2}")
    if size1 in (0, size2):
        return []
    return _range_hashes(source, _consistency_ranges(size1, size2))


def root_from_frontier(frontier: Sequence[bytes]) -> bytes:
    """The root whose right edge ``frontier`` is (perfect subtree hashes of ``[0, size)``, largest first)."""
    if not frontier:
        return EMPTY_ROOT
    acc = frontier[-1]
    for part in reversed(frontier[:-1]):
        acc = node_hash(part, acc)
    return acc


def check_leaves(
    source: NodeSource, leaves: Mapping[int, bytes], *, size: int, frontier: Sequence[bytes]
) -> list[tuple[int, int]]:
    """Authenticate many leaf hashes of the tree of ``size`` leaves at once, against its trusted ``frontier``.

    Every leaf is folded up to the frontier subtree that holds it, taking the sibling subtrees it needs from
    ``source`` (one batched read per level, about k log2(n/k) nodes for k leaves). Only the frontier is trusted
    (check it folds to a verified root with ``root_from_frontier``): a wrong stored node can make a true leaf
    fail, never a wrong leaf pass. Returns the leaf ranges ``[start, end)`` of the frontier subtrees whose
    recomputed hash differs; empty when every leaf is in the tree.
    """
    _check_size("tree size", size)
    keys = frontier_keys(size)
    if len(frontier) != len(keys):
        raise InputError(f"the frontier of a tree of size {size} has {len(keys)} nodes, got {len(frontier)}")
    if any(not _is_int(i) or not 0 <= i < size for i in leaves):
        raise InputError(f"leaf indices must lie in [0, {size})")
    if any(not isinstance(h, bytes) or len(h) != HASH_SIZE for h in leaves.values()):
        raise InputError("leaves must be 32-byte leaf hashes")
    starts = [idx << level for level, idx in keys]
    computed: dict[int, bytes] = {}  # frontier position -> hash recomputed from the leaves
    current = dict(leaves)
    level = 0
    while current:
        climbing: dict[int, bytes] = {}
        for idx, value in current.items():
            position = bisect.bisect_right(starts, idx << level) - 1
            if keys[position][0] == level:
                computed[position] = value
            else:
                climbing[idx] = value
        siblings = _fetch(source, ((level, idx ^ 1) for idx in climbing if idx ^ 1 not in climbing))
        current = {}
        for idx, value in climbing.items():
            if idx & 1 and idx ^ 1 in climbing:
                continue  # its left sibling computes the parent
            other = climbing[idx ^ 1] if idx ^ 1 in climbing else siblings[(level, idx ^ 1)]
            current[idx >> 1] = node_hash(other, value) if idx & 1 else node_hash(value, other)
        level += 1
    return [(starts[p], starts[p] + (1 << keys[p][0])) for p in sorted(computed) if computed[p] != bytes(frontier[p])]


# --- appending ----------------------------------------------------------------------------------------------


def completed_nodes(
    index: int, leaf: bytes, frontier: Sequence[bytes]
) -> tuple[list[tuple[int, int, bytes]], list[bytes]]:
    """Append leaf hash ``leaf`` as leaf ``index``: the nodes that become complete and the new frontier.

    ``frontier`` holds the hashes at ``frontier_keys(index)`` (largest first). The returned nodes
    ``(level, index, hash)`` start with the leaf itself at level 0; persisting them on every append is what
    keeps roots and proofs at O(log n) reads.
    """
    _check_size("leaf index", index)
    if index >= _MAX_SIZE:
        raise InputError("the tree is full")
    if not isinstance(leaf, bytes | bytearray) or len(leaf) != HASH_SIZE:
        raise InputError("leaf must be a 32-byte leaf hash")
    expected = index.bit_count()
    if len(frontier) != expected:
        raise InputError(f"frontier of a tree of size {index} has {expected} nodes, got {len(frontier)}")
    for i, h in enumerate(frontier):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise InputError(f"frontier node {i} is not a 32-byte hash")
    new_frontier = list(frontier)
    h = bytes(leaf)
    level, idx = 0, index
    out = [(0, index, h)]
    while idx & 1:
        h = node_hash(new_frontier.pop(), h)
        level += 1
        idx >>= 1
        out.append((level, idx, h))
    new_frontier.append(h)
    return out, new_frontier


def load_frontier(source: NodeSource, size: int) -> list[bytes]:
    """Read the frontier of the tree of ``size`` leaves in one lookup, ready for ``completed_nodes``."""
    keys = frontier_keys(size)
    hashes = _fetch(source, keys)
    return [hashes[k] for k in keys]


class MemoryTree:
    """A dict-backed ``NodeSource`` grown by appending leaf hashes; for tests and offline verification."""

    __slots__ = ("_frontier", "_nodes", "_size")

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._nodes: dict[NodeKey, bytes] = {}
        self._frontier: list[bytes] = []
        self._size = 0
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf: bytes) -> int:
        """Append a leaf hash and return its index."""
        new, self._frontier = completed_nodes(self._size, leaf, self._frontier)
        for level, idx, h in new:
            self._nodes[(level, idx)] = h
        self._size += 1
        return self._size - 1

    def nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        """Return the stored hashes for ``keys`` (unknown keys are omitted)."""
        return {k: self._nodes[k] for k in keys if k in self._nodes}

    def root(self) -> bytes:
        """Root hash of the whole tree as it stands."""
        return root(self, self._size)
