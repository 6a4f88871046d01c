"""The component contract: ports check and convert inputs, components keep their outputs,
the catalog finds, searches and versions them."""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest

from yugong.core.errors import InvalidInput, NotFound
from yugong.platform.components import Catalog, Category, Component, Port, component
from yugong.platform.components.catalog import _components_of


def make(name: str = "test.double", version: str = "1.0.0", **kw: Any) -> Component:
    @component(
        name,
        version,
        kw.pop("category", Category.STATISTICAL),
        title=kw.pop("title", "Twice the input"),
        inputs={"x": Port.series("kW", "Power", batch=True, min_length=2)},
        outputs={"y": Port.series("kW", "Twice the power")},
        **kw,
    )
    def double(x: np.ndarray) -> dict[str, Any]:
        """Twice the input.

        Used by the tests of the contract."""
        return {"y": 2 * x}

    return double


def error_of(port: Port, value: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as exc:
        port.coerce("v", value)
    assert exc.value.errors[0].loc == "inputs.v"
    return exc.value


def test_numbers_convert_units_and_keep_bounds() -> None:
    temp = Port.quantity("degC", "Temperature", minimum=-273.15)
    assert temp.coerce("v", {"value": [32, 212], "unit": "degF"}) == pytest.approx([0, 100])
    assert temp.coerce("v", 20.0) == pytest.approx(20.0)
    assert "missing unit" in error_of(temp, {"value": 3}).detail
    assert "unknown unit" in error_of(temp, {"value": 3, "unit": "furlongs_per_blink"}).detail
    assert "below the minimum -273.15 degC" in error_of(temp, -300).detail
    assert "index 1" in error_of(temp, [1.0, float("nan")]).detail
    assert "boolean" in error_of(temp, True).detail
    assert "expected numbers" in error_of(temp, "hot").detail
    one = Port.number("m", "Length", exclusive_minimum=0)
    assert "one number" in error_of(one, [1, 2]).detail
    assert "must be greater than 0" in error_of(one, 0).detail
    assert one.coerce("v", {"value": 150, "unit": "cm"}) == pytest.approx(1.5)


def test_series_shapes_and_batches() -> None:
    series = Port.series(None, "Samples", min_length=3)
    assert series.coerce("v", [1, 2, 3]).shape == (3,)
    assert "1-D array" in error_of(series, [[1, 2, 3]]).detail
    assert "at least 3" in error_of(series, [1, 2]).detail
    batch = Port.series(None, "Samples", batch=True)
    assert batch.coerce("v", np.ones((4, 5))).shape == (4, 5)
    assert "1-D or 2-D" in error_of(batch, np.ones((2, 2, 2))).detail
    assert "plain numbers" in error_of(series, {"value": [1, 2, 3], "unit": "mm"}).detail
    share = Port.quantity(None, "Efficiency as a fraction")
    assert share.coerce("v", {"value": 85, "unit": "percent"}) == pytest.approx(0.85)
    nan_ok = Port.series(None, "Gappy", allow_nan=True)
    assert np.isnan(nan_ok.coerce("v", [1, None, 3])[1])


def test_other_kinds() -> None:
    assert Port.integer("n", minimum=2).coerce("v", 5) == 5
    assert "integer" in error_of(Port.integer("n"), 2.5).detail
    assert "below the minimum" in error_of(Port.integer("n", minimum=2), 1).detail
    mode = Port.text("Window", enum=("hann", "flattop"))
    assert mode.coerce("v", "hann") == "hann"
    assert "not one of hann, flattop" in error_of(mode, "box").detail
    assert "true or false" in error_of(Port.boolean("flag"), "yes").detail
    periods = Port.object(
        "Periods",
        {"type": "array", "items": {"type": "object", "required": ["start"]}},
    )
    with pytest.raises(InvalidInput) as exc:
        periods.coerce("p", [{"start": 1}, {"end": 2}])
    assert exc.value.errors[0].loc == "inputs.p[1]"
    assert "'start' is a required property" in exc.value.detail


def test_component_call_and_description() -> None:
    comp = make(industries=("energy",), references=("A reference",))
    assert comp(x={"value": [1000, 2000], "unit": "W"})["y"] == pytest.approx([2, 4])
    with pytest.raises(InvalidInput, match="missing"):
        comp()
    with pytest.raises(InvalidInput, match="unknown input 'z'"):
        comp(x=[1, 2], z=1)
    d = comp.describe()
    assert d["summary"] == "Twice the input." and d["references"] == ["A reference"]
    assert d["inputs"]["required"] == ["x"]
    assert d["inputs"]["properties"]["x"]["x-unit"] == "kW"
    assert d["outputs"]["properties"]["y"]["type"] == "array"
    assert set(comp.describe(full=False)) == {
        "name",
        "version",
        "category",
        "title",
        "summary",
        "industries",
    }


def test_broken_contract_is_reported() -> None:
    @component(
        "test.broken",
        "1.0.0",
        Category.HYBRID,
        title="Forgets an output",
        inputs={},
        outputs={"a": Port.number(None, "A"), "b": Port.number(None, "B")},
    )
    def broken() -> dict[str, Any]:
        return {"a": 1.0, "c": 2.0}

    with pytest.raises(RuntimeError, match=r"missing outputs \['b'\], undeclared outputs \['c'\]"):
        broken()


@pytest.mark.parametrize(
    ("name", "version", "words"),
    [
        ("Spc.Cpk", "1.0.0", "lowercase"),
        ("spc..cpk", "1.0.0", "lowercase"),
        ("spc", "1.0", "MAJOR"),
    ],
)
def test_names_and_versions_are_checked(name: str, version: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        make(name, version)


def test_catalog_versions_search_and_conflicts() -> None:
    catalog = Catalog()
    for version in ("1.0.0", "1.10.0", "1.2.0"):
        catalog.add(make(version=version))
    catalog.add(make("test.other", category=Category.MECHANISM, industries=("water",)))
    catalog.add(make(version="1.2.0"))  # a second package claiming the same version
    assert len(catalog) == 4 and "already provided" in catalog.errors[0]
    assert catalog.get("test.double").version == "1.10.0"  # numeric, not text, order
    assert catalog.get("test.double", "1.2.0").version == "1.2.0"
    with pytest.raises(NotFound, match=r"has no version '9.9.9' \(has 1.0.0, 1.2.0, 1.10.0\)"):
        catalog.get("test.double", "9.9.9")
    with pytest.raises(NotFound, match="no component named"):
        catalog.get("test.none")
    assert [c.name for c in catalog.search()] == ["test.double", "test.other"]
    assert len(catalog.search(all_versions=True)) == 4
    assert [c.name for c in catalog.search(category="mechanism")] == ["test.other"]
    assert [c.name for c in catalog.search(industry="water")] == ["test.other"]
    assert [c.name for c in catalog.search(text="twice POWER")] == ["test.double", "test.other"]
    assert catalog.search(text="steam") == []
    with pytest.raises(InvalidInput, match="not one of mechanism"):
        catalog.search(category="magic")


def test_entry_point_objects() -> None:
    comp = make()
    module = types.ModuleType("tests_plugin_mod")
    module.double = comp  # type: ignore[attr-defined]
    assert _components_of(module) == []  # defined elsewhere: not this module's
    object.__setattr__(comp.func, "__module__", "tests_plugin_mod")
    assert _components_of(module) == [comp]
    assert _components_of(lambda: [comp]) == [comp]
    with pytest.raises(TypeError, match="not Component"):
        _components_of(lambda: ["x"])
    with pytest.raises(TypeError, match="is not a component"):
        _components_of(42)


def test_the_shipped_catalog_loads_cleanly() -> None:
    catalog = Catalog.discover()
    assert catalog.errors == []
    for comp in catalog.components.values():
        assert comp.references, f"{comp.name} cites no reference"
        assert comp.doc, f"{comp.name} has no documentation"
        for name, port in [*comp.inputs.items(), *comp.outputs.items()]:
            assert port.description, f"{comp.name}.{name} has no description"


def test_reference_docs_are_current() -> None:
    from pathlib import Path

    from yugong.platform.components.docs import catalog_markdown

    doc = Path(__file__).resolve().parents[3] / "docs" / "components-reference.md"
    assert doc.read_text() == catalog_markdown(Catalog.discover()), (
        "regenerate with: yugong component docs > docs/components-reference.md"
    )
