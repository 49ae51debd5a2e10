"""The one canonical timestamp form: exactly what the audit accepts, no more."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.timeutil import format_time, is_canonical_time, now


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)))
def test_every_formatted_time_is_canonical(moment: datetime) -> None:
    assert is_canonical_time(format_time(moment))


@pytest.mark.parametrize(
    "text",
    [
        "2025-02-29T00:00:00.000000Z",  # not a leap year
        "2025-13-01T00:00:00.000000Z",
        "2025-04-31T12:00:00.000000Z",
        "2025-01-01T24:00:00.000000Z",
        "2025-01-01T23:60:00.000000Z",
        "2025-01-01T23:59:60.000000Z",  # leap seconds are not written by the ledger
        "2025-01-01T00:00:00.00000Z",
        "2025-01-01T00:00:00.000000",
        "2025-01-01T00:00:00.000000Z\n",
        "2025-01-01 00:00:00.000000Z",
        "2025-01-01T00:00:00.000000+00:00",
        "\uff12025-01-01T00:00:00.000000Z"[:27],  # a fullwidth digit: \\d alone would accept it
        "2025-01-01T00:00:00.00000\u0665Z",  # an Arabic-Indic digit
        "",
    ],
)
def test_non_canonical_times_are_refused(text: str) -> None:
    assert not is_canonical_time(text)


def test_now_and_leap_day() -> None:
    assert is_canonical_time(now())
    assert is_canonical_time("2024-02-29T23:59:59.999999Z")
