"""Tests of ledger.merkle: public probe vectors, RFC 6962 reference data, a naive RFC model, and read cost."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import InputError, NotFoundError, ProofError, StorageError
from ledger.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    NodeKey,
    completed_nodes,
    consistency_proof,
    frontier_keys,
    inclusion_proof,
    leaf_hash,
    load_frontier,
    node_hash,
    perfect_subtrees,
    root,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from tests.merkle_model import NaiveTree
from tests.probes import PROBES, VECTORS, Probe

MAX_SIZE = 300

# --- the naive model (tests/merkle_model.py) over fixed leaves ------------------------------------------------

LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_SIZE + 1)]
NAIVE = NaiveTree(LEAVES)
mth = NAIVE.mth
naive_path = NAIVE.path
naive_proof = NAIVE.proof


TREE = MemoryTree(LEAVES[:MAX_SIZE])


def flip(h: bytes, bit: int = 0) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


# --- public probe vectors (transparency-dev/merkle) ---------------------------------------------------------


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
def test_probe_vector(probe: Probe) -> None:
    case = probe.case
    if probe.kind == "inclusion":

        def run() -> None:
            verify_inclusion(
                leaf=probe.raw("leafHash"),
                index=case["leafIdx"],
                size=case["treeSize"],
                path=probe.proof,
                root=probe.raw("root"),
            )
    else:

        def run() -> None:
            verify_consistency(
                size1=case["size1"],
                size2=case["size2"],
                root1=probe.raw("root1"),
                root2=probe.raw("root2"),
                path=probe.proof,
            )

    if probe.want_error:
        with pytest.raises(ProofError):
            run()
    else:
        run()


def test_probe_vectors_present_with_license() -> None:
    assert (VECTORS / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert (VECTORS / "README.md").is_file()
    assert len([p for p in PROBES if not p.want_error]) >= 10


# --- RFC 6962 reference data --------------------------------------------------------------------------------

RFC_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes.fromhex("5051525354555657"),
    bytes.fromhex("606162636465666768696a6b6c6d6e6f"),
]
RFC_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _rfc_tree() -> MemoryTree:
    return MemoryTree(leaf_hash(x) for x in RFC_LEAVES)


def test_empty_tree_root() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaves([]) == EMPTY_ROOT
    assert root(MemoryTree(), 0) == EMPTY_ROOT


def test_rfc6962_roots() -> None:
    tree = _rfc_tree()
    hashes = [leaf_hash(x) for x in RFC_LEAVES]
    for size, want in enumerate(RFC_ROOTS, start=1):
        assert root(tree, size).hex() == want
        assert root_from_leaves(hashes[:size]).hex() == want


def test_rfc6962_proofs() -> None:
    tree = _rfc_tree()
    assert [h.hex() for h in inclusion_proof(tree, 0, 8)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    assert [h.hex() for h in consistency_proof(tree, 6, 8)] == [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]
    assert [h.hex() for h in consistency_proof(tree, 2, 5)] == [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]


def test_leaf_and_node_domain_separation() -> None:
    assert leaf_hash(b"").hex() == RFC_ROOTS[0]
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert leaf_hash(a + b) != node_hash(a, b)


# --- generated proofs equal the naive model, for every size -------------------------------------------------


def test_roots_every_size() -> None:
    for size in range(MAX_SIZE + 1):
        assert root(TREE, size) == mth(0, size) == root_from_leaves(LEAVES[:size])


def test_inclusion_every_size_and_index() -> None:
    for size in range(1, MAX_SIZE + 1):
        r = mth(0, size)
        for index in range(size):
            proof = inclusion_proof(TREE, index, size)
            assert proof == naive_path(index, 0, size), (index, size)
            verify_inclusion(leaf=LEAVES[index], index=index, size=size, path=proof, root=r)


def test_consistency_every_pair() -> None:
    for size2 in range(1, MAX_SIZE + 1):
        for size1 in range(1, size2):
            proof = consistency_proof(TREE, size1, size2)
            assert proof == naive_proof(size1, size2), (size1, size2)
            verify_consistency(size1=size1, size2=size2, root1=mth(0, size1), root2=mth(0, size2), path=proof)


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return size, draw(st.integers(0, size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(2, MAX_SIZE))
    return draw(st.integers(1, size2 - 1)), size2


@given(size_and_index())
def test_inclusion_matches_naive_and_resists_mutation(case: tuple[int, int]) -> None:
    size, index = case
    proof = inclusion_proof(TREE, index, size)
    assert proof == naive_path(index, 0, size)
    r = mth(0, size)
    verify_inclusion(leaf=LEAVES[index], index=index, size=size, path=proof, root=r)

    def rejects(**changes: Any) -> None:
        args: dict[str, Any] = {"leaf": LEAVES[index], "index": index, "size": size, "path": proof, "root": r}
        args.update(changes)
        with pytest.raises(ProofError):
            verify_inclusion(**args)

    for i in range(len(proof)):
        for bit in (0, 7):
            rejects(path=[*proof[:i], flip(proof[i], bit), *proof[i + 1 :]])
        rejects(path=proof[:i] + proof[i + 1 :])  # removed element
        rejects(path=[*proof[:i], proof[i] + b"\x00", *proof[i + 1 :]])  # 33 bytes
    rejects(path=[*proof, r])
    rejects(path=[r, *proof])
    rejects(leaf=flip(LEAVES[index]))
    rejects(leaf=leaf_hash(LEAVES[index]))  # a hash of the hash is not the leaf
    rejects(root=flip(r))
    rejects(root=mth(0, size - 1) if size > 1 else EMPTY_ROOT)
    for other in {index - 1, index + 1, index ^ 1, index ^ 2, size, -1} - {index}:
        rejects(index=other)
    rejects(size=0)
    rejects(size=index)
    # Changing the size is caught when it changes the proof's shape; see test_inclusion_size_binding.
    for other in (size * 2, size // 2, size + 1, size - 1):
        if index < other <= MAX_SIZE and len(naive_path(index, 0, other)) != len(proof):
            rejects(size=other)


def test_inclusion_size_binding() -> None:
    """An inclusion proof fixes the size only through its shape: size and root must come as a signed pair."""
    proof = inclusion_proof(TREE, 0, 3)
    verify_inclusion(leaf=LEAVES[0], index=0, size=4, path=proof, root=mth(0, 3))
    with pytest.raises(ProofError):
        verify_inclusion(leaf=LEAVES[0], index=0, size=4, path=proof, root=mth(0, 4))


@given(two_sizes())
def test_consistency_matches_naive_and_resists_mutation(case: tuple[int, int]) -> None:
    size1, size2 = case
    proof = consistency_proof(TREE, size1, size2)
    assert proof == naive_proof(size1, size2)
    r1, r2 = mth(0, size1), mth(0, size2)
    verify_consistency(size1=size1, size2=size2, root1=r1, root2=r2, path=proof)

    def rejects(**changes: Any) -> None:
        args: dict[str, Any] = {"size1": size1, "size2": size2, "root1": r1, "root2": r2, "path": proof}
        args.update(changes)
        with pytest.raises(ProofError):
            verify_consistency(**args)

    for i in range(len(proof)):
        rejects(path=[*proof[:i], flip(proof[i]), *proof[i + 1 :]])
        rejects(path=proof[:i] + proof[i + 1 :])
        rejects(path=[*proof[:i], proof[i][:31], *proof[i + 1 :]])
    rejects(path=[*proof, r1])
    rejects(path=[r2, *proof])
    rejects(path=[])
    rejects(root1=flip(r1))
    rejects(root2=flip(r2))
    rejects(root1=r2, root2=r1)
    rejects(size1=size2, size2=size1)
    rejects(size1=0)
    for s1, s2 in ((size1 + 1, size2), (size1 - 1, size2), (size1, size2 + 1), (size1, size2 - 1)):
        if 0 < s1 < s2 and len(naive_proof(s1, s2)) != len(proof):
            rejects(size1=s1, size2=s2)


def test_consistency_edge_sizes() -> None:
    r5 = mth(0, 5)
    verify_consistency(size1=5, size2=5, root1=r5, root2=r5, path=[])
    verify_consistency(size1=0, size2=5, root1=EMPTY_ROOT, root2=r5, path=[])
    verify_consistency(size1=0, size2=0, root1=EMPTY_ROOT, root2=EMPTY_ROOT, path=[])
    assert consistency_proof(TREE, 0, 5) == []
    assert consistency_proof(TREE, 5, 5) == []
    with pytest.raises(ProofError):
        verify_consistency(size1=5, size2=5, root1=r5, root2=mth(0, 4), path=[])
    with pytest.raises(ProofError):
        verify_consistency(size1=0, size2=5, root1=r5, root2=r5, path=[])
    with pytest.raises(ProofError):
        verify_consistency(size1=0, size2=5, root1=EMPTY_ROOT, root2=r5, path=[EMPTY_ROOT])
    with pytest.raises(ProofError):
        verify_consistency(size1=-1, size2=5, root1=EMPTY_ROOT, root2=r5, path=[])
    with pytest.raises(InputError):
        consistency_proof(TREE, 6, 5)


def test_verifiers_reject_non_integers_and_non_bytes() -> None:
    r = mth(0, 1)
    with pytest.raises(ProofError):
        verify_inclusion(leaf=LEAVES[0], index=True, size=2, path=[LEAVES[1]], root=mth(0, 2))
    with pytest.raises(ProofError):
        verify_inclusion(leaf=LEAVES[0].hex(), index=0, size=1, path=[], root=r)  # type: ignore[arg-type]
    with pytest.raises(ProofError):
        verify_inclusion(leaf=LEAVES[0], index=0, size=2, path=LEAVES[1], root=mth(0, 2))  # type: ignore[arg-type]


# --- planning, appending and read cost ----------------------------------------------------------------------


@given(st.integers(0, 2**40), st.integers(0, 2**20))
def test_perfect_subtrees_cover_range_exactly(start: int, length: int) -> None:
    end = start + length
    keys = perfect_subtrees(start, end)
    pos = start
    for level, index in keys:
        assert index * 2**level == pos  # aligned and contiguous
        pos += 2**level
    assert pos == end
    assert len(keys) <= 2 * max(length, 1).bit_length()


def test_perfect_subtrees_of_prefix_are_largest_first() -> None:
    assert perfect_subtrees(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert perfect_subtrees(3, 9) == [(0, 3), (2, 1), (0, 8)]
    assert perfect_subtrees(5, 5) == []
    with pytest.raises(InputError):
        perfect_subtrees(5, 4)


def test_completed_nodes_and_frontier() -> None:
    nodes: dict[NodeKey, bytes] = {}
    frontier: list[bytes] = []
    for index in range(64):
        new, frontier = completed_nodes(index, LEAVES[index], frontier)
        assert new[0] == (0, index, LEAVES[index])
        # every node that just became complete, and nothing else
        want = [(lvl, index >> lvl) for lvl in range(7) if (index + 1) % (1 << lvl) == 0]
        assert [(lvl, i) for lvl, i, _ in new] == want
        for lvl, i, h in new:
            assert h == mth(i << lvl, (i + 1) << lvl)
            nodes[(lvl, i)] = h
        assert frontier == [nodes[k] for k in frontier_keys(index + 1)]
    with pytest.raises(InputError):
        completed_nodes(3, LEAVES[3], [])  # the frontier of size 3 has two nodes
    with pytest.raises(InputError):
        completed_nodes(0, b"short", [])


def test_load_frontier_and_missing_nodes() -> None:
    assert load_frontier(TREE, 13) == [mth(0, 8), mth(8, 12), mth(12, 13)]
    assert load_frontier(TREE, 0) == []
    small = MemoryTree(LEAVES[:5])
    with pytest.raises(StorageError):
        root(small, 6)
    with pytest.raises(NotFoundError):
        inclusion_proof(small, 5, 5)


class CountingSource:
    """Answers any key with a fake hash and records every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        self.calls.append(len(keys))
        return {k: hashlib.sha256(repr(k).encode()).digest() for k in keys}


@pytest.mark.parametrize("size", [1_000_000, 2**20, 2**20 - 1, 2**40 + 12345])
def test_reads_are_one_batch_of_log_n_keys(size: int) -> None:
    bound = 2 * math.log2(size) + 2
    for index in (0, 1, size // 3, size - 2, size - 1):
        src = CountingSource()
        inclusion_proof(src, index, size)
        assert len(src.calls) == 1 and src.calls[0] <= bound, (index, src.calls)
    for size1 in (1, 2, size // 2, size // 3 + 1, size - 1):
        src = CountingSource()
        consistency_proof(src, size1, size)
        assert len(src.calls) == 1 and src.calls[0] <= bound, (size1, src.calls)
    src = CountingSource()
    root(src, size)
    assert src.calls == [size.bit_count()]


@settings(max_examples=50)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40))
def test_memory_tree_matches_root_from_leaves(data: list[bytes]) -> None:
    hashes = [leaf_hash(x) for x in data]
    tree = MemoryTree()
    for i, h in enumerate(hashes):
        assert tree.append(h) == i
        assert tree.root() == root_from_leaves(hashes[: i + 1])
    assert tree.size == len(hashes)
    assert merkle.root(tree, tree.size) == root_from_leaves(hashes)


# --- authenticating many leaves at once against a trusted frontier ------------------------------------------------


class AlteredSource:
    """TREE with one stored node replaced: what an attacker with the database can do to the siblings."""

    def __init__(self, key: NodeKey, value: bytes) -> None:
        self.key, self.value = key, value
        self.calls: list[int] = []

    def nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        self.calls.append(len(keys))
        got = dict(TREE.nodes(keys))
        if self.key in got:
            got[self.key] = self.value
        return got


def test_root_from_frontier() -> None:
    assert merkle.root_from_frontier([]) == EMPTY_ROOT
    for size in range(1, MAX_SIZE + 1):
        assert merkle.root_from_frontier(load_frontier(TREE, size)) == mth(0, size)


@given(size_and_index(), st.sets(st.integers(0, MAX_SIZE - 1), max_size=40))
def test_check_leaves_accepts_true_leaves_and_locates_a_wrong_one(case: tuple[int, int], extra: set[int]) -> None:
    size, bad = case
    frontier = load_frontier(TREE, size)
    chosen = {i: LEAVES[i] for i in extra if i < size} | {bad: LEAVES[bad]}
    assert merkle.check_leaves(TREE, chosen, size=size, frontier=frontier) == []
    wrong = chosen | {bad: flip(LEAVES[bad])}
    ranges = merkle.check_leaves(TREE, wrong, size=size, frontier=frontier)
    assert len(ranges) == 1 and ranges[0][0] <= bad < ranges[0][1]
    level, idx = next(k for k in frontier_keys(size) if k[1] << k[0] == ranges[0][0])
    assert ranges[0] == (idx << level, (idx + 1) << level)  # exactly the frontier subtree holding it


def test_check_leaves_a_wrong_stored_sibling_never_makes_a_wrong_leaf_pass() -> None:
    size = 300
    frontier = load_frontier(TREE, size)
    for index in (0, 1, 130, 255, 256, 298):
        source = AlteredSource((0, index ^ 1), flip(LEAVES[index ^ 1]))  # a stored sibling rewritten
        assert merkle.check_leaves(source, {index: flip(LEAVES[index])}, size=size, frontier=frontier) != []
        assert merkle.check_leaves(source, {index: LEAVES[index]}, size=size, frontier=frontier) != []
        assert merkle.check_leaves(TREE, {index: LEAVES[index]}, size=size, frontier=frontier) == []


def test_check_leaves_reads_per_level_in_bounded_batches() -> None:
    size = MAX_SIZE
    frontier = load_frontier(TREE, size)
    source = AlteredSource((99, 0), b"")  # nothing altered
    every_third = {i: LEAVES[i] for i in range(0, size, 3)}
    assert merkle.check_leaves(source, every_third, size=size, frontier=frontier) == []
    assert max(source.calls) <= merkle.FETCH_BATCH
    assert len(source.calls) <= math.ceil(size / merkle.FETCH_BATCH) * (size.bit_length() + 1)
    assert merkle.check_leaves(source, {}, size=size, frontier=frontier) == []
    with pytest.raises(InputError):
        merkle.check_leaves(TREE, {size: LEAVES[0]}, size=size, frontier=frontier)
    with pytest.raises(InputError):
        merkle.check_leaves(TREE, {0: LEAVES[0]}, size=size, frontier=frontier[:-1])
    with pytest.raises(InputError):
        merkle.check_leaves(TREE, {0: b"short"}, size=size, frontier=frontier)
    with pytest.raises(StorageError):
        merkle.check_leaves(MemoryTree(LEAVES[:5]), {0: LEAVES[0]}, size=size, frontier=frontier)
