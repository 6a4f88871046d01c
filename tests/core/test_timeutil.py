from datetime import UTC, datetime

import numpy as np
import pytest

from yugong.core.timeutil import ms_array_to_us, parse_duration_us, to_us, us_to_iso


def test_milliseconds_and_microseconds() -> None:
    assert to_us(1_700_000_000_000) == 1_700_000_000_000_000
    assert to_us(1_700_000_000_000_123) == 1_700_000_000_000_123  # already µs
    assert to_us(1_700_000_000_000.5) == 1_700_000_000_000_500
    assert to_us("1700000000000") == 1_700_000_000_000_000


def test_iso_and_datetime() -> None:
    assert to_us("2023-11-14T22:13:20Z") == 1_700_000_000_000_000
    assert to_us("2023-11-14T22:13:20.000001+00:00") == 1_700_000_000_000_001
    assert to_us(datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)) == 1_700_000_000_000_000
    assert us_to_iso(1_700_000_000_000_000) == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize("bad", ["yesterday", "", True, float("nan"), None])
def test_bad_timestamps_are_named(bad: object) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        to_us(bad)  # type: ignore[arg-type]


def test_vectorised_conversion_matches_scalar() -> None:
    values = [1_700_000_000_000, 1_700_000_000_000_123, 0, 5]
    assert ms_array_to_us(values).tolist() == [to_us(v) for v in values]
    assert ms_array_to_us(np.array(values)).dtype == np.int64


def test_durations() -> None:
    assert parse_duration_us("1m") == 60_000_000
    assert parse_duration_us("500ms") == 500_000
    assert parse_duration_us("1.5h") == 5_400_000_000
    assert parse_duration_us("1d") == 86_400_000_000
    assert parse_duration_us(15) == 15_000_000
    for bad in ("0s", "-1m", "fortnight", "m"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration_us(bad)
