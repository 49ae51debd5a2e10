"""Pure verification of a sequence of blocks: contents, hashes, links, heights, times and signing keys.

Split in two so the expensive part can run in parallel: ``check_block`` (canonical payload, payload hash, block
hash, Ed25519 signature) needs only the block and the public keys the chain introduced; ``ChainWalker`` checks
what depends on order (heights, links, timestamps, which key may sign at each height) from cheap fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.block import GENESIS_PREV_HASH, Block
from ledger.canonical import decode, is_canonical
from ledger.errors import DamagedBlockError, InputError
from ledger.findings import Finding, FindingClass
from ledger.signing import key_id, verify_signature
from ledger.timeutil import is_canonical_time
from ledger.versions import VersionName

GENESIS = "genesis"
KEY = "key"
VERSION = "version"


def check_block(block: Block, keys: Mapping[str, bytes]) -> Finding | None:
    """Check one block on its own; return the first problem (payload, then hash, then signature) or None."""
    if not is_canonical(block.payload):
        return _finding(block, FindingClass.PAYLOAD, "payload bytes are not RFC 8785 canonical JSON")
    if hashlib.sha256(block.payload).hexdigest() != block.payload_hash:
        return _finding(block, FindingClass.PAYLOAD, "payload does not match its payload hash")
    if block.computed_hash() != block.block_hash:
        return _finding(block, FindingClass.LINK, "block hash does not match the block's fields")
    public = keys.get(block.key_id)
    if public is None:
        return _finding(
            block, FindingClass.SIGNATURE, f"signed by key {block.key_id}, which the chain never introduced"
        )
    if not verify_signature(public, bytes.fromhex(block.block_hash), block.signature):
        return _finding(block, FindingClass.SIGNATURE, f"signature does not verify under key {block.key_id}")
    return None


def version_label(kind: str, payload: bytes) -> str | None:
    """The version name a ``version`` block's payload gives, or None: a label for findings, nothing more.

    A tampered payload can name any version, so the name only tells a reader which block is meant; the audit
    never relies on it. Names that do not follow the naming convention are not shown at all.
    """
    if kind != VERSION:
        return None
    try:
        return str(VersionName.parse(decode(payload)["name"]))
    except (ValueError, TypeError, KeyError, RecursionError, InputError):
        return None


def introduced_key(block: Block) -> tuple[str, bytes] | None:
    """The (key id, public key) a genesis or key block introduces, or None when it introduces none."""
    if block.kind not in (GENESIS, KEY):
        return None
    try:
        data = decode(block.payload)
        public = bytes.fromhex(data["public_key"])
    except (ValueError, KeyError, TypeError):
        return None
    if len(public) != 32:
        return None
    return key_id(public), public


def collect_keys(blocks: Iterable[Block]) -> dict[str, bytes]:
    """Every key the given genesis/key blocks introduce, by key id."""
    keys: dict[str, bytes] = {}
    for block in blocks:
        found = introduced_key(block)
        if found is not None:
            keys[found[0]] = found[1]
    return keys


@dataclass(frozen=True, slots=True)
class LinkFields:
    """The cheap fields the ordered checks need (readable without the payload, except for key blocks)."""

    height: int
    prev_hash: str
    block_hash: str
    timestamp: str
    kind: str
    key_id: str
    introduces: tuple[str, bytes] | None = None
    version: str | None = None


def link_fields(block: Block) -> LinkFields:
    """Project a block onto the fields the walker needs."""
    return LinkFields(
        height=block.height,
        prev_hash=block.prev_hash,
        block_hash=block.block_hash,
        timestamp=block.timestamp,
        kind=block.kind,
        key_id=block.key_id,
        introduces=introduced_key(block),
        version=version_label(block.kind, block.payload),
    )


@dataclass(slots=True)
class ChainWalker:
    """Walks blocks in height order and reports breaks in order: heights, links, timestamps and key use.

    It can start from a verified state (height, hash, time, active key) to audit only new blocks.
    """

    next_height: int = 0
    prev_hash: str = GENESIS_PREV_HASH
    last_time: str = ""
    active_key: str | None = None
    retired: set[str] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)

    def visit(self, row: LinkFields) -> None:
        """Check one block against everything before it."""
        if row.height > self.next_height:
            missing = (
                f"{self.next_height}" if row.height == self.next_height + 1 else f"{self.next_height}..{row.height - 1}"
            )
            self.findings.append(
                Finding(
                    self.next_height,
                    None,
                    FindingClass.SEQUENCE,
                    f"block(s) {missing} missing before {row.height}",
                )
            )
        elif row.height < self.next_height:
            self._add(row, FindingClass.SEQUENCE, f"height {row.height} repeats or goes backwards")
        if row.height == 0 or self.next_height == 0:
            self._visit_genesis(row)
        elif row.prev_hash != self.prev_hash:
            self._add(row, FindingClass.LINK, "prev_hash does not match the previous block's hash")
        if not is_canonical_time(row.timestamp):
            self._add(row, FindingClass.SEQUENCE, f"timestamp {row.timestamp!r} is not canonical UTC")
        elif row.timestamp < self.last_time:
            self._add(row, FindingClass.SEQUENCE, f"timestamp {row.timestamp} is earlier than the previous block's")
        if row.height != 0:
            self._check_signer(row)
        self.next_height = row.height + 1
        self.prev_hash = row.block_hash
        self.last_time = max(self.last_time, row.timestamp)

    def finish(self, expected_head: int | None = None) -> list[Finding]:
        """Close the walk; an empty chain or a missing genesis is a sequence finding."""
        if self.next_height == 0:
            self.findings.append(Finding(0, None, FindingClass.SEQUENCE, "the ledger has no genesis block"))
        if expected_head is not None and self.next_height - 1 != expected_head:
            self.findings.append(
                Finding(self.next_height, None, FindingClass.SEQUENCE, f"chain ends at {self.next_height - 1}")
            )
        return self.findings

    def _visit_genesis(self, row: LinkFields) -> None:
        if row.kind != GENESIS:
            self._add(row, FindingClass.SEQUENCE, f"block 0 must be the genesis block, found kind {row.kind!r}")
        if row.prev_hash != GENESIS_PREV_HASH:
            self._add(row, FindingClass.LINK, "genesis prev_hash must be all zeros")
        if row.introduces is None or row.introduces[0] != row.key_id:
            self._add(row, FindingClass.SIGNATURE, "genesis must be signed by the key it introduces")
        self.active_key = row.key_id

    def _check_signer(self, row: LinkFields) -> None:
        if row.key_id in self.retired:
            self._add(row, FindingClass.SIGNATURE, f"signed by retired key {row.key_id}")
        elif self.active_key is not None and row.key_id != self.active_key:
            self._add(
                row,
                FindingClass.SIGNATURE,
                f"signed by {row.key_id}, but the active key is {self.active_key}",
            )
        if row.kind == KEY and row.introduces is not None:
            if self.active_key is not None:
                self.retired.add(self.active_key)
            self.active_key = row.introduces[0]

    def _add(self, row: LinkFields, kind: FindingClass, message: str) -> None:
        self.findings.append(Finding(row.height, row.version, kind, message))


def verify_chain(blocks: Iterable[Block]) -> list[Finding]:
    """Verify a whole chain in one process (the reference the parallel audit must agree with)."""
    materialised = list(blocks)
    keys = collect_keys(materialised)
    walker = ChainWalker()
    findings: list[Finding] = []
    for block in materialised:
        problem = check_block(block, keys)
        if problem is not None:
            findings.append(problem)
        walker.visit(link_fields(block))
    return sort_findings([*findings, *walker.finish()])


_PRIORITY = {kind: index for index, kind in enumerate(FindingClass)}


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Order findings by height (None last), then by class priority, so the first is the first bad block."""
    return sorted(findings, key=lambda f: (f.height is None, f.height or 0, _PRIORITY[f.kind], f.path or ""))


def _finding(block: Block, kind: FindingClass, message: str) -> Finding:
    return Finding(block.height, version_label(block.kind, block.payload), kind, message)


def payload_of(block: Block) -> dict[str, Any]:
    """The payload of a block as a dict; {} when it is not a JSON object (the audit reports such a block), for
    readers that must go on past it."""
    try:
        return block.data()
    except DamagedBlockError:
        return {}
