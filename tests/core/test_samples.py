import pyarrow as pa
import pytest

from yugong.core.quality import Quality
from yugong.core.samples import SAMPLE_SCHEMA, conform, make_batch


def test_make_batch_broadcasts_and_nulls_nan() -> None:
    batch = make_batch(3, [1, 2, 3], 10, [1.5, float("nan"), 2.0], quality=[0, 2, 1])
    assert batch.schema == SAMPLE_SCHEMA
    assert batch.column("tenant").to_pylist() == [3, 3, 3]
    assert batch.column("ts").to_pylist() == [10, 10, 10]
    assert batch.column("value").to_pylist() == [1.5, None, 2.0]
    assert batch.column("quality").to_pylist() == [0, 2, 1]


def test_conform_casts_and_names_missing_columns() -> None:
    t = pa.table({"tenant": [1], "series": [7], "ts": [5], "quality": [0], "value": [1]})
    out = conform(t)
    assert out.schema == SAMPLE_SCHEMA
    assert out.column("value").to_pylist() == [1.0]
    assert out.column("text").to_pylist() == [None]
    with pytest.raises(ValueError, match="series"):
        conform(pa.table({"tenant": [1], "ts": [5], "quality": [0]}))


def test_quality_parse() -> None:
    assert Quality.parse("Uncertain") is Quality.UNCERTAIN
    assert Quality.parse(2) is Quality.BAD
    with pytest.raises(ValueError, match="good, uncertain or bad"):
        Quality.parse("so-so")
