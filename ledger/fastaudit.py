"""Chain verification split over height ranges, run in parallel worker processes; the parent stitches seams.

Per range a worker (its own database connection) runs ``check_block`` on every block (canonical payload,
payload hash, block hash, Ed25519 signature), the ordered ``ChainWalker`` checks inside the range, and compares
the stored Merkle nodes of the range with the tree recomputed from the block hashes; it returns findings, the
range's first/last link fields and the perfect-subtree hashes the parent needs. The parent checks links and
times across range seams and folds Merkle roots at the sizes it was asked for. With one worker the same code
runs in-process, so the parallel and sequential audits cannot drift apart.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection

from ledger import merkle
from ledger.audit import STATE_KINDS, ChainScan, record_block
from ledger.block import Block, plain_header_bytes
from ledger.canonical import is_canonical
from ledger.chain import GENESIS, KEY, ChainWalker, LinkFields, check_block, collect_keys, link_fields
from ledger.errors import StorageError
from ledger.findings import Finding, FindingClass
from ledger.merkle import NodeKey, leaf_hash, node_hash
from ledger.signing import SIGNATURE_DOMAIN
from ledger.store import Store, _to_block, driver_sql
from ledger.timeutil import is_canonical_time

#: Ranges of 4096 blocks: small enough that the last ranges keep every worker busy until the end.
CHUNK_LEVEL = 12
#: Below this many blocks the audit runs in-process: starting workers costs more than it saves.
PARALLEL_THRESHOLD = 1 << 16


@dataclass(frozen=True, slots=True)
class RangeTask:
    """One worker's job: verify heights ``[start, end)``."""

    url: str
    start: int
    end: int
    keys: Mapping[str, bytes]
    active: str | None
    retired: frozenset[str]
    wanted: tuple[NodeKey, ...] = ()
    want_leaves: bool = False


@dataclass(frozen=True, slots=True)
class RangeResult:
    """What a worker found in its range."""

    start: int
    end: int
    findings: tuple[Finding, ...]
    count: int
    first: LinkFields | None
    last_height: int
    last_hash: str
    max_time: str
    subtrees: dict[NodeKey, bytes]
    state_blocks: tuple[Block, ...]
    leaves: tuple[bytes | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Seed:
    """Where to resume: a verified state at ``size`` (from the trusted state file) instead of the genesis."""

    size: int
    last_hash: str
    last_time: str
    keys: Mapping[str, bytes]
    active: str
    retired: frozenset[str]
    frontier: tuple[bytes, ...]


@dataclass(slots=True)
class ChainCheck:
    """The stitched result: the chain scan (findings, versions, head) and recomputed Merkle roots by size."""

    scan: ChainScan
    roots: dict[int, bytes | None] = field(default_factory=dict)
    size: int = 0
    """Tree size implied by the highest stored block (height + 1)."""


@functools.cache
def _store(url: str) -> Store:
    return Store.open(url)


def check_range(task: RangeTask, store: Store | None = None) -> RangeResult:
    """Verify one height range (in a worker process with its own connection, or in-process with ``store``).

    Each row first takes the quick path (``_quick``: plain tuples, cached key objects, no per-block objects);
    a row it does not fully accept goes through ``check_block`` and ``ChainWalker.visit``, which name the
    finding. The quick path only accepts what those would accept without a finding, so findings are the same.
    """
    store = store if store is not None else _store(task.url)
    with store.reading() as connection:
        rows = _rows(connection, task.start, task.end)
        stored = _stored_nodes(connection, task.start, task.end)
    keys = dict(task.keys)
    public = _public_keys(keys)
    walker = ChainWalker(next_height=task.start, active_key=task.active, retired=set(task.retired))
    findings: list[Finding] = []
    state_blocks: list[Block] = []
    leaves: list[bytes | None] = [None] * (task.end - task.start)
    first: LinkFields | None = None
    for row in rows:
        if first is not None:
            digest = _quick(row, public, walker)
            if digest is not None:
                leaves[row[1] - task.start] = sha256(b"\x00" + digest).digest()
                if row[4] in STATE_KINDS:
                    state_blocks.append(_to_block(row))
                continue
        block = _to_block(row)
        fields = link_fields(block)
        if first is None:
            first = fields
            if task.start > 0:
                walker.prev_hash = block.prev_hash  # the parent checks the link across the seam
        problem = check_block(block, keys)
        if problem is not None:
            findings.append(problem)
        elif block.kind in STATE_KINDS:
            state_blocks.append(block)
        walker.visit(fields)
        with contextlib.suppress(ValueError):  # not hex: check_block already reported the block hash
            leaves[block.height - task.start] = leaf_hash(bytes.fromhex(block.block_hash))
    findings.extend(walker.findings)
    levels = _levels(task.start, task.end, leaves)
    findings.extend(_compare_nodes(task.start, task.end, levels, stored))
    subtrees = {}
    for key in task.wanted:
        value = _level_get(task.start, levels, key)
        if value is not None:
            subtrees[key] = value
    last = rows[-1] if rows else None
    return RangeResult(
        start=task.start,
        end=task.end,
        findings=tuple(findings),
        count=len(rows),
        first=first,
        last_height=last[1] if last else -1,
        last_hash=last[8] if last else "",
        max_time=walker.last_time,  # the walker keeps the greatest timestamp it visited
        subtrees=subtrees,
        state_blocks=tuple(state_blocks),
        leaves=tuple(leaves) if task.want_leaves else (),
    )


_BLOCK_ROWS = (
    "SELECT format, height, prev_hash, timestamp, kind, payload, payload_hash, key_id, block_hash, signature "
    "FROM blocks WHERE height >= :start AND height < :end ORDER BY height"
)


def _fetch(connection: Connection, sql: str, params: dict[str, int], what: str) -> list[Any]:
    """All rows of ``sql`` (``:name`` parameters) as plain DBAPI tuples: no row objects on the audit's hot
    path, which reads every block and about as many Merkle nodes."""
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.cursor()
    try:
        cursor.execute(driver_sql(connection, sql), params)
        return list(cursor.fetchall())
    except dbapi.Error as exc:
        raise StorageError(f"database error reading {what}: {exc}") from exc
    finally:
        cursor.close()


def _rows(connection: Connection, start: int, end: int) -> list[tuple[Any, ...]]:
    """The blocks of ``[start, end)`` in ``Block`` field order."""
    rows = _fetch(connection, _BLOCK_ROWS, {"start": start, "end": end}, f"blocks {start}..{end - 1}")
    return [tuple(row) for row in rows]


def _public_keys(keys: Mapping[str, bytes]) -> dict[str, Ed25519PublicKey]:
    """Key objects built once per range (a key that does not load is left to ``check_block`` to report)."""
    out = {}
    for kid, raw in keys.items():
        with contextlib.suppress(ValueError):
            out[kid] = Ed25519PublicKey.from_public_bytes(bytes(raw))
    return out


def _quick(row: tuple[Any, ...], public: Mapping[str, Ed25519PublicKey], walker: ChainWalker) -> bytes | None:
    """The raw block hash when the row passes every block and order check with no finding, else None.

    Accepts exactly the rows ``check_block`` passes and ``walker.visit`` adds nothing for (and then advances the
    walker as ``visit`` would); everything else, including genesis and key blocks, is left to them.
    """
    fmt, height, prev_hash, timestamp, kind, payload, payload_hash, kid, block_hash, signature = row
    if (
        height != walker.next_height
        or height == 0
        or prev_hash != walker.prev_hash
        or kind in (KEY, GENESIS)
        or kid != walker.active_key
        or kid in walker.retired
        or type(payload) is not bytes
        or type(signature) is not bytes
    ):
        return None
    header = plain_header_bytes(fmt, height, prev_hash, timestamp, kind, payload_hash, kid)
    if header is None or timestamp < walker.last_time or not is_canonical_time(timestamp):
        return None
    if not is_canonical(payload) or sha256(payload).hexdigest() != payload_hash:
        return None
    digest = sha256(header).digest()
    key = public.get(kid)
    if key is None or digest.hex() != block_hash:
        return None
    try:
        key.verify(signature, SIGNATURE_DOMAIN + digest)
    except (InvalidSignature, ValueError):
        return None
    walker.next_height = height + 1
    walker.prev_hash = block_hash
    walker.last_time = timestamp
    return digest


_NODE_ROWS = "SELECT idx, hash FROM merkle_nodes WHERE level = :level AND idx >= :lo AND idx < :hi"


def _stored_nodes(connection: Connection, start: int, end: int) -> dict[NodeKey, bytes]:
    """Stored nodes lying entirely inside ``[start, end)``, one indexed range query per level."""
    out: dict[NodeKey, bytes] = {}
    level = 0
    while (1 << level) <= end - start:
        lo, hi = -(-start >> level), end >> level
        if lo < hi:
            params = {"level": level, "lo": lo, "hi": hi}
            for idx, digest in _fetch(connection, _NODE_ROWS, params, f"Merkle nodes {start}..{end - 1}"):
                out[(level, idx)] = bytes(digest)
        level += 1
    return out


def _levels(start: int, end: int, leaves: list[bytes | None]) -> list[list[bytes | None]]:
    """Every perfect subtree inside ``[start, end)`` recomputed from the leaves (None where a leaf is missing)."""
    levels = [leaves]
    level = 1
    while (1 << level) <= end - start:
        below, base_below = levels[-1], -(-start >> (level - 1))
        lo, hi = -(-start >> level), end >> level
        row: list[bytes | None] = []
        for idx in range(lo, hi):
            left, right = below[2 * idx - base_below], below[2 * idx + 1 - base_below]
            row.append(node_hash(left, right) if left is not None and right is not None else None)
        levels.append(row)
        level += 1
    return levels


def _level_get(start: int, levels: list[list[bytes | None]], key: NodeKey) -> bytes | None:
    level, idx = key
    if level >= len(levels):
        return None
    pos = idx - (-(-start >> level))
    row = levels[level]
    return row[pos] if 0 <= pos < len(row) else None


def _compare_nodes(
    start: int, end: int, levels: list[list[bytes | None]], stored: Mapping[NodeKey, bytes]
) -> list[Finding]:
    """One ``consistency`` finding for the first stored node (lowest level, then height) that disagrees."""
    worst: tuple[int, int, str] | None = None
    for level, row in enumerate(levels):
        base = -(-start >> level)
        for pos, computed in enumerate(row):
            if computed is None:
                continue
            idx = base + pos
            have = stored.get((level, idx))
            if have == computed:
                continue
            height = idx << level
            what = "missing" if have is None else "different"
            if level == 0:
                message = f"stored Merkle leaf of block {height} is {what}: it does not match the block hash"
            else:
                span = f"{height}..{height + (1 << level) - 1}"
                message = f"stored Merkle node (level {level}, index {idx}) is {what} from blocks {span}"
            worst = (height, level, message)
            break
        if worst is not None:  # the lowest level that differs explains the levels above it
            break
    return [] if worst is None else [Finding(worst[0], None, FindingClass.CONSISTENCY, worst[2])]


def _replay(
    rows: Iterable[LinkFields], before: int, active: str | None, retired: set[str]
) -> tuple[str | None, set[str]]:
    """The walker's key state after the key-changing rows below height ``before``."""
    retired = set(retired)
    for row in rows:
        if row.height >= before:
            break
        if row.height == 0:
            active = row.key_id
        elif row.kind == KEY and row.introduces is not None:
            if active is not None:
                retired.add(active)
            active = row.introduces[0]
    return active, retired


def _ranges(start: int, end: int, chunk: int) -> Iterator[tuple[int, int]]:
    lo = start
    while lo < end:
        hi = min(end, (lo // chunk + 1) * chunk)
        yield lo, hi
        lo = hi


def verify_chain(
    store: Store,
    *,
    workers: int | None = None,
    targets: Sequence[int] = (),
    seed: Seed | None = None,
    prior: ChainScan | None = None,
    chunk_level: int = CHUNK_LEVEL,
    parallel_threshold: int = PARALLEL_THRESHOLD,
) -> ChainCheck:
    """Verify the chain in ``store`` (from ``seed`` when given) and recompute roots at ``targets``.

    ``workers``: processes to use (default: one per CPU), each opening its own connection to the same URL;
    ledgers under ``parallel_threshold`` blocks are checked in-process through ``store`` itself. Ranges are
    aligned blocks of ``2**chunk_level`` heights. ``prior`` is what the blocks below ``seed`` recorded
    (versions, findings): the new blocks' state is recorded on top of it, so a prune names an older version.
    """
    url = store.engine.url.render_as_string(hide_password=False)
    return _verify(store, url, workers, targets, seed, prior, chunk_level, parallel_threshold)


def _verify(
    store: Store,
    url: str,
    workers: int | None,
    targets: Sequence[int],
    seed: Seed | None,
    prior: ChainScan | None,
    chunk_level: int,
    parallel_threshold: int,
) -> ChainCheck:
    chunk = 1 << chunk_level
    with store.reading() as connection:
        head = Store.head(connection)
        key_blocks = list(Store.blocks_of_kind(connection, (GENESIS, KEY)))
    size = head.height + 1 if head is not None else 0
    start = seed.size if seed is not None else 0
    key_rows = [link_fields(b) for b in key_blocks if b.height >= start]
    keys: dict[str, bytes] = dict(seed.keys) if seed is not None else {}
    keys.update(collect_keys(b for b in key_blocks if b.height >= start))
    wanted = _wanted(targets, size, chunk_level) if seed is None else {}
    tasks = []
    for lo, hi in _ranges(start, size, chunk):
        active, retired = _replay(key_rows, lo, seed.active if seed else None, set(seed.retired) if seed else set())
        tasks.append(
            RangeTask(
                url=url,
                start=lo,
                end=hi,
                keys=keys,
                active=active,
                retired=frozenset(retired),
                wanted=tuple(sorted(wanted.get(lo // chunk, ()))),
                want_leaves=seed is not None,
            )
        )
    results = list(_run(tasks, workers, size - start, parallel_threshold, store))
    check = _stitch(results, seed, size, prior if prior is not None else ChainScan())
    check.roots = (
        _roots_from_frontier(seed, results, targets)
        if seed is not None
        else _roots_from_chunks(results, targets, size, chunk_level)
    )
    return check


def _run(
    tasks: list[RangeTask], workers: int | None, count: int, threshold: int, store: Store
) -> Iterable[RangeResult]:
    procs = workers if workers is not None else _cores()
    if procs <= 1 or len(tasks) <= 1 or count < threshold:
        return (check_range(t, store) for t in tasks)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=procs, mp_context=multiprocessing.get_context("spawn"))

    def results() -> Iterator[RangeResult]:
        with pool:
            yield from pool.map(check_range, tasks)

    return results()


def _cores() -> int:
    """CPUs this process may run on (the affinity mask, which ``os.cpu_count`` ignores in containers)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _stitch(results: Iterable[RangeResult], seed: Seed | None, size: int, scan: ChainScan) -> ChainCheck:
    """Join the ranges in height order on top of ``scan`` (what the blocks below the first range recorded)."""
    findings = scan.findings
    prev_hash = seed.last_hash if seed is not None else None
    max_time = seed.last_time if seed is not None else ""
    for result in results:
        findings.extend(result.findings)
        first = result.first
        if first is None:
            if result.start < size:
                findings.append(_missing(result.start, result.end))
            continue
        if prev_hash is not None and first.height > 0 and first.prev_hash != prev_hash:
            findings.append(
                Finding(
                    first.height, first.version, FindingClass.LINK, "prev_hash does not match the previous block's hash"
                )
            )
        if max_time and first.timestamp < max_time:
            findings.append(
                Finding(
                    first.height,
                    first.version,
                    FindingClass.SEQUENCE,
                    f"timestamp {first.timestamp} is earlier than the previous block's",
                )
            )
        for block in result.state_blocks:
            record_block(scan, block)
        scan.count += result.count
        scan.head_height, scan.head_hash = result.last_height, result.last_hash
        prev_hash = result.last_hash
        max_time = max(max_time, result.max_time)
        if result.last_height < result.end - 1 and result.end < size:
            findings.append(_missing(result.last_height + 1, result.end))
    if scan.count == 0 and seed is None:
        findings.append(Finding(0, None, FindingClass.SEQUENCE, "the ledger has no genesis block"))
    return ChainCheck(scan=scan, size=size)


def _missing(lo: int, hi: int) -> Finding:
    shown = f"{lo}" if hi == lo + 1 else f"{lo}..{hi - 1}"
    return Finding(lo, None, FindingClass.SEQUENCE, f"block(s) {shown} missing")


def _wanted(targets: Sequence[int], size: int, chunk_level: int) -> dict[int, set[NodeKey]]:
    """Per chunk, the perfect subtrees inside it that roots at ``targets`` need (plus full chunk roots)."""
    out: dict[int, set[NodeKey]] = {}
    for chunk in range(size >> chunk_level):
        out.setdefault(chunk, set()).add((chunk_level, chunk))
    for m in targets:
        if 0 < m <= size:
            for level, idx in merkle.perfect_subtrees(0, m):
                if level <= chunk_level:
                    out.setdefault((idx << level) >> chunk_level, set()).add((level, idx))
    return out


def _roots_from_chunks(
    results: Iterable[RangeResult], targets: Sequence[int], size: int, chunk_level: int
) -> dict[int, bytes | None]:
    pieces: dict[NodeKey, bytes] = {}
    for result in results:
        pieces.update(result.subtrees)

    @functools.cache
    def node(level: int, idx: int) -> bytes | None:
        if level <= chunk_level:
            return pieces.get((level, idx))
        left, right = node(level - 1, 2 * idx), node(level - 1, 2 * idx + 1)
        return node_hash(left, right) if left is not None and right is not None else None

    roots: dict[int, bytes | None] = {}
    for m in targets:
        if m == 0:
            roots[m] = merkle.EMPTY_ROOT
        elif m <= size:
            parts = [node(level, idx) for level, idx in merkle.perfect_subtrees(0, m)]
            roots[m] = None if any(p is None for p in parts) else _fold([p for p in parts if p is not None])
    return roots


def _roots_from_frontier(seed: Seed, results: Iterable[RangeResult], targets: Sequence[int]) -> dict[int, bytes | None]:
    wanted = set(targets)
    roots: dict[int, bytes | None] = {}
    frontier = list(seed.frontier)
    size = seed.size
    if size in wanted:
        roots[size] = _fold(frontier) if frontier else merkle.EMPTY_ROOT
    broken = False
    for result in results:
        for leaf in result.leaves:
            if leaf is None:
                broken = True
            if broken or leaf is None:
                size += 1
                if size in wanted:
                    roots[size] = None
                continue
            _, frontier = merkle.completed_nodes(size, leaf, frontier)
            size += 1
            if size in wanted:
                roots[size] = _fold(frontier)
    return roots


def _fold(parts: Sequence[bytes]) -> bytes:
    """RFC 9162 root from the perfect subtrees of ``[0, size)``, largest first (a right fold)."""
    acc = parts[-1]
    for part in reversed(parts[:-1]):
        acc = node_hash(part, acc)
    return acc
