"""The JSON path subset and the mapping of documents to edge points."""

from __future__ import annotations

import math

import pytest

from yugong.core.quality import Quality
from yugong.edge.jsonpath import (
    MISSING,
    Columns,
    JsonPathError,
    JsonPointMap,
    compile_path,
    timestamp_us,
)
from yugong.edge.profiles import Point
from yugong.edge.samples import EDGE_SCHEMA

DOC = {
    "a": {"b": [{"c": 1.5}, {"c": 2.5}]},
    "odd key": {"x.y": 7},
    "flag": True,
    "nothing": None,
    "list": [10, 20, 30],
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.a.b[0].c", 1.5),
        ("a.b[1].c", 2.5),
        ("$['odd key']['x.y']", 7),
        ('$["odd key"]["x.y"]', 7),
        ("$.list[-1]", 30),
        ("list[0]", 10),
        ("$.flag", True),
        ("$.nothing", None),
        ("$", DOC),
        ("[0]", MISSING),  # the document is not a list
    ],
)
def test_paths_select_one_value(path: str, expected: object) -> None:
    assert compile_path(path).get(DOC) == expected or compile_path(path).get(DOC) is expected


@pytest.mark.parametrize(
    "path",
    ["$.missing", "$.a.b[5].c", "$.a.b[-3]", "$.list.x", "$.flag.x", "$.a['b'][0]['d']"],
)
def test_absent_values_are_missing_not_errors(path: str) -> None:
    assert compile_path(path).get(DOC) is MISSING


def test_compiled_steps() -> None:
    assert compile_path("$.a.b[0]['c d']").steps == ("a", "b", 0, "c d")
    assert compile_path(r"$['it\'s']").steps == ("it's",)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("", "non-empty"),
        ("$.", "key name after '.' at 1"),
        ("$.a[*]", "wildcards"),
        ("$..a", "key name after '.' at 1"),
        ("$.a[1:2]", "slices"),
        ("$.a[?(@.x)]", "filters"),
        ("$.__import__('os')", "unexpected '('"),
        ("a b", "unexpected ' '"),
    ],
)
def test_unsupported_paths_fail_clearly(path: str, fragment: str) -> None:
    with pytest.raises(JsonPathError, match=r"JSON path|non-empty") as info:
        compile_path(path)
    assert fragment in str(info.value)


def test_timestamps() -> None:
    assert timestamp_us(1_700_000_000) == 1_700_000_000_000_000  # seconds
    assert timestamp_us(1_700_000_000_123) == 1_700_000_000_123_000  # milliseconds
    assert timestamp_us(1_700_000_000_123_456) == 1_700_000_000_123_456  # microseconds
    assert timestamp_us(1.5, "s") == 1_500_000
    assert timestamp_us(1500, "ms") == 1_500_000
    assert timestamp_us("2024-01-01T00:00:00Z") == 1_704_067_200_000_000
    for bad in (True, None, "yesterday", math.nan, [1]):
        with pytest.raises(ValueError, match="timestamp"):
            timestamp_us(bad)


def _points() -> list[Point]:
    return [
        Point(property="temp", path="$.t", type="float64", scale=0.1, offset=-5),
        Point(property="running", path="$.run", type="bool"),
        Point(property="mode", path="$.mode", type="string", length=4),
        Point(property="count", path="$.n"),
    ]


def test_point_map_builds_one_batch_with_conversions() -> None:
    m = JsonPointMap(_points())
    out = Columns()
    bad = m.extract({"t": 250, "run": "on", "mode": "automatic", "n": "42"}, "d1", 100, out)
    bad += m.extract({"t": 260, "run": 0, "mode": 3, "n": 1}, "d2", 200, out)
    table = out.table()
    assert table.schema == EDGE_SCHEMA
    assert bad == 0
    rows = table.to_pylist()
    assert [(r["device"], r["point"], r["ts"]) for r in rows[:4]] == [
        ("d1", "temp", 100),
        ("d1", "running", 100),
        ("d1", "mode", 100),
        ("d1", "count", 100),
    ]
    assert rows[0]["value"] == pytest.approx(20.0)  # 250 * 0.1 - 5
    assert rows[1]["value"] == 1.0
    assert rows[2]["text"] == "auto" and rows[2]["value"] is None  # cut to length 4
    assert rows[3]["value"] == 42.0  # a number sent as text
    assert rows[5]["value"] == 0.0 and rows[6]["text"] == "3"
    assert set(table.column("quality").to_pylist()) == {Quality.GOOD}


def test_missing_values_are_skipped_or_bad_as_configured() -> None:
    doc = {"t": 1, "run": None}
    skip = Columns()
    assert JsonPointMap(_points()).extract(doc, "d", 5, skip) == 0
    assert skip.point == ["temp"]
    report = Columns()
    assert JsonPointMap(_points(), report_missing=True).extract(doc, "d", 5, report) == 3
    assert report.point == ["temp", "running", "mode", "count"]
    assert report.quality == [Quality.GOOD, Quality.BAD, Quality.BAD, Quality.BAD]
    assert report.value[1:] == [None, None, None]


def test_values_of_the_wrong_kind_are_bad() -> None:
    out = Columns()
    bad = JsonPointMap(_points()).extract(
        {"t": "warm", "run": "maybe", "mode": {"x": 1}, "n": [1]}, "d", 1, out
    )
    assert bad == 4
    assert out.quality == [Quality.BAD] * 4


def test_timestamp_from_the_document() -> None:
    m = JsonPointMap(_points(), timestamp_path="$.meta.ts", timestamp_unit="ms")
    assert m.timestamp({"meta": {"ts": 1000}}, 99) == 1_000_000
    with pytest.raises(ValueError, match=r"no timestamp at \$\.meta\.ts"):
        m.timestamp({}, 99)
    assert JsonPointMap(_points()).timestamp({}, 99) == 99


def test_point_without_path_or_with_bad_path_names_the_point() -> None:
    with pytest.raises(JsonPathError, match="point temp: needs path"):
        JsonPointMap([Point(property="temp")])
    with pytest.raises(JsonPathError, match=r"point temp: JSON path '\$\.a\[\*\]'"):
        JsonPointMap([Point(property="temp", path="$.a[*]")])
