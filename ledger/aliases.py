"""Promotion and rollback: named aliases (default ``current``) that point at versions, moved by ``alias`` blocks.

Nothing is edited: every move is a new block, so ``holder_at`` can answer which version held an alias at any
moment. The previous holder is read under the write lock, so two racing promotions cannot both claim it.
Rollback follows a stack: promotions push, a rollback pops back to the version it names (default: the one
before the current holder).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from ledger.errors import InputError, NotFoundError
from ledger.lifecycle import ALIAS, AliasEvent, fold, read_state
from ledger.store import Store

if TYPE_CHECKING:
    from ledger.api import Ledger
    from ledger.block import Block

DEFAULT_ALIAS = "current"
_ALIAS_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")


def check_alias(alias: str) -> str:
    """Refuse alias names that are not short lowercase identifiers."""
    if _ALIAS_RE.fullmatch(alias) is None:
        raise InputError(f"alias {alias!r} is invalid: use 1-64 of a-z, 0-9, '.', '_', '-'")
    return alias


def events_for(events: Iterable[AliasEvent], model: str, alias: str) -> list[AliasEvent]:
    """The alias events of one (model, alias), in chain order."""
    return [e for e in events if e.model == model and e.alias == alias]


def stack(events: Sequence[AliasEvent]) -> list[str]:
    """The promotion stack after ``events`` (pure): promote pushes; rollback pops back to its target."""
    out: list[str] = []
    for event in events:
        if event.action == "rollback" and event.version in out:
            del out[len(out) - out[::-1].index(event.version) :]
        else:
            out.append(event.version)
    return out


def holder_at(events: Sequence[AliasEvent], at: str | None) -> AliasEvent | None:
    """The event that set the alias as of time ``at`` (canonical RFC 3339; None means now)."""
    held = None
    for event in events:
        if at is not None and event.timestamp > at:
            break
        held = event
    return held


def _alias_events(connection: Connection) -> list[AliasEvent]:
    return fold(Store.blocks_of_kind(connection, [ALIAS])).aliases


def promote(ledger: Ledger, ref: str, *, alias: str = DEFAULT_ALIAS, model: str | None = None) -> Block:
    """Point ``alias`` of the version's model at the version; refuses pruned versions and no-op moves."""
    check_alias(alias)
    payload = ledger.find(ref, model=model).data()
    name, slug = str(payload["name"]), str(payload["model"])
    if name in read_state(ledger).pruned:
        raise InputError(f"{name} is pruned (its files are not on local disk): `ledger restore {name}` first")

    def build(connection: Connection, _head: Block) -> tuple[dict[str, object], None]:
        current = holder_at(events_for(_alias_events(connection), slug, alias), None)
        previous = current.version if current is not None else None
        if previous == name:
            raise InputError(f"{name} already holds the alias {alias!r}")
        return {"model": slug, "alias": alias, "version": name, "previous": previous, "action": "promote"}, None

    return ledger._commit(ALIAS, build)


def rollback(ledger: Ledger, *, model: str | None = None, alias: str = DEFAULT_ALIAS, to: str | None = None) -> Block:
    """Move ``alias`` back to an earlier holder (default: the one before the current holder)."""
    check_alias(alias)
    slug = _model(ledger, model)
    target = str(ledger.find(to, model=slug).data()["name"]) if to is not None else None

    def build(connection: Connection, _head: Block) -> tuple[dict[str, object], None]:
        events = events_for(_alias_events(connection), slug, alias)
        if not events:
            raise NotFoundError(f"{slug} has never had the alias {alias!r}: nothing to roll back")
        current = events[-1].version
        history = stack(events)
        if target is None:
            if len(history) < 2:
                raise NotFoundError(f"{alias!r} of {slug} has no earlier holder to roll back to")
            chosen = history[-2]
        else:
            if target == current:
                raise InputError(f"{target} already holds the alias {alias!r}")
            if target not in {e.version for e in events}:
                raise InputError(f"{target} never held the alias {alias!r}: use `ledger promote` for a new version")
            chosen = target
        return {"model": slug, "alias": alias, "version": chosen, "previous": current, "action": "rollback"}, None

    return ledger._commit(ALIAS, build)


def current(
    ledger: Ledger, *, model: str | None = None, alias: str = DEFAULT_ALIAS, at: str | None = None
) -> AliasEvent:
    """Which version held ``alias`` of the model at ``at`` (default now), with the block that set it."""
    check_alias(alias)
    slug = _model(ledger, model)
    held = holder_at(events_for(read_state(ledger).aliases, slug, alias), at)
    if held is None:
        when = f" at {at}" if at is not None else ""
        raise NotFoundError(f"no version of {slug} held the alias {alias!r}{when}")
    return held


def _model(ledger: Ledger, model: str | None) -> str:
    models = ledger.models()
    if model is not None:
        slug = model.lower()
        if slug not in models:
            raise NotFoundError(f"model {model!r} has no versions in the ledger")
        return slug
    if len(models) != 1:
        raise InputError(f"the ledger holds {len(models)} models: give --model ({', '.join(models) or 'none'})")
    return models[0]
