"""UTC timestamps in the one fixed RFC 3339 form the ledger hashes: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from ledger.errors import InputError

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def format_time(moment: datetime) -> str:
    """Format an aware datetime in the ledger's canonical UTC form."""
    return moment.astimezone(UTC).strftime(_FORMAT)


def now() -> str:
    """The current time in canonical form."""
    return format_time(datetime.now(UTC))


def is_canonical_time(text: str) -> bool:
    """True when ``text`` is a timestamp in exactly the canonical form."""
    if len(text) != 27 or not _PATTERN.match(text):
        return False
    try:  # the same calendar check strptime does, without its cost on the audit's hot path
        datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]), int(text[17:19]))
    except ValueError:
        return False
    return True


def parse_user_time(text: str) -> str:
    """Parse a user-given RFC 3339 / ISO 8601 time (naive means UTC) into canonical form."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"not an ISO 8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_time(moment)
