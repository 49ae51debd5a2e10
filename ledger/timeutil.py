"""UTC timestamps in the one fixed RFC 3339 form the ledger hashes: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime

from ledger.errors import InputError

_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z", re.ASCII)


def format_time(moment: datetime) -> str:
    """Format an aware datetime in the ledger's canonical UTC form (four-digit year: strftime's %Y is not
    zero-padded before year 1000 on every platform)."""
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}Z"


def now() -> str:
    """The current time in canonical form."""
    return format_time(datetime.now(UTC))


def is_canonical_time(text: str) -> bool:
    """True when ``text`` is a timestamp in exactly the canonical form (and a real calendar date)."""
    return len(text) == 27 and _PATTERN.fullmatch(text) is not None and _is_date(text[:10])


@functools.lru_cache(maxsize=1024)
def _is_date(day: str) -> bool:
    """Whether ``YYYY-MM-DD`` names a real day; cached, as a ledger's blocks share few days (the audit's hot path)."""
    try:
        datetime(int(day[0:4]), int(day[5:7]), int(day[8:10]))
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
