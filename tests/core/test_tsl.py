"""Thing model (TSL) parsing, validation errors by path, and the import/export round trip."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from yugong.core import tsl
from yugong.core.errors import InvalidInput

# An Alibaba Cloud style export: numbers as strings, Chinese labels, extra keys (desc,
# functionType), the standard post event and set/get services.
ALIYUN_TSL: dict[str, Any] = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"version": "1.0", "productKey": "a1CNCmachine"},
    "properties": [
        {
            "identifier": "SpindleSpeed",
            "name": "主轴转速",
            "accessMode": "r",
            "required": False,
            "dataType": {
                "type": "int",
                "specs": {
                    "min": "0",
                    "max": "24000",
                    "unit": "r/min",
                    "unitName": "转每分钟",
                    "step": "1",
                },
            },
        },
        {
            "identifier": "Temperature",
            "name": "温度",
            "accessMode": "r",
            "required": True,
            "desc": "主轴温度",
            "dataType": {
                "type": "float",
                "specs": {
                    "min": "-40",
                    "max": "120.5",
                    "unit": "°C",
                    "unitName": "摄氏度",
                    "step": "0.1",
                },
            },
        },
        {
            "identifier": "Power",
            "name": "有功功率",
            "accessMode": "r",
            "required": False,
            "dataType": {"type": "double", "specs": {"min": 0, "max": 1e6, "unit": "kW"}},
        },
        {
            "identifier": "PowerSwitch",
            "name": "电源开关",
            "accessMode": "rw",
            "required": False,
            "dataType": {"type": "bool", "specs": {"0": "关", "1": "开"}},
        },
        {
            "identifier": "RunState",
            "name": "运行状态",
            "accessMode": "r",
            "required": False,
            "dataType": {
                "type": "enum",
                "specs": {"0": "空闲", "1": "运行", "2": "故障", "3": "停机"},
            },
        },
        {
            "identifier": "ProgramName",
            "name": "加工程序",
            "accessMode": "rw",
            "required": False,
            "dataType": {"type": "text", "specs": {"length": "255"}},
        },
        {
            "identifier": "LastMaintenance",
            "name": "上次保养",
            "accessMode": "rw",
            "required": False,
            "dataType": {"type": "date", "specs": {}},
        },
        {
            "identifier": "GeoLocation",
            "name": "地理位置",
            "accessMode": "rw",
            "required": False,
            "dataType": {
                "type": "struct",
                "specs": [
                    {
                        "identifier": "Longitude",
                        "name": "经度",
                        "dataType": {
                            "type": "double",
                            "specs": {
                                "min": "-180",
                                "max": "180",
                                "unit": "°",
                                "unitName": "度",
                                "step": "0.01",
                            },
                        },
                    },
                    {
                        "identifier": "Latitude",
                        "name": "纬度",
                        "dataType": {
                            "type": "double",
                            "specs": {
                                "min": "-90",
                                "max": "90",
                                "unit": "°",
                                "unitName": "度",
                                "step": "0.01",
                            },
                        },
                    },
                ],
            },
        },
        {
            "identifier": "AxisLoad",
            "name": "轴负载",
            "accessMode": "r",
            "required": False,
            "dataType": {"type": "array", "specs": {"size": "5", "item": {"type": "float"}}},
        },
    ],
    "events": [
        {
            "identifier": "post",
            "name": "post",
            "type": "info",
            "required": True,
            "desc": "属性上报",
            "method": "thing.event.property.post",
            "outputData": [
                {
                    "identifier": "SpindleSpeed",
                    "name": "主轴转速",
                    "dataType": {"type": "int", "specs": {"min": "0", "max": "24000"}},
                },
            ],
        },
        {
            "identifier": "Fault",
            "name": "故障报警",
            "type": "alert",
            "required": False,
            "method": "thing.event.Fault.post",
            "outputData": [
                {
                    "identifier": "ErrorCode",
                    "name": "故障码",
                    "dataType": {"type": "enum", "specs": {"0": "过热", "1": "过载"}},
                },
            ],
        },
    ],
    "services": [
        {
            "identifier": "set",
            "name": "set",
            "required": True,
            "callType": "async",
            "desc": "属性设置",
            "method": "thing.service.property.set",
            "inputData": [
                {
                    "identifier": "PowerSwitch",
                    "name": "电源开关",
                    "dataType": {"type": "bool", "specs": {"0": "关", "1": "开"}},
                },
            ],
            "outputData": [],
        },
        {
            "identifier": "get",
            "name": "get",
            "required": True,
            "callType": "async",
            "desc": "属性获取",
            "method": "thing.service.property.get",
            "inputData": ["SpindleSpeed", "Temperature"],
            "outputData": [],
        },
        {
            "identifier": "Reset",
            "name": "复位",
            "required": False,
            "callType": "sync",
            "method": "thing.service.Reset",
            "inputData": [
                {
                    "identifier": "Level",
                    "name": "级别",
                    "dataType": {"type": "int", "specs": {"min": "1", "max": "3", "step": "1"}},
                },
            ],
            "outputData": [
                {
                    "identifier": "Result",
                    "name": "结果",
                    "dataType": {"type": "text", "specs": {"length": "64"}},
                },
            ],
        },
    ],
}


def _with(path: list[str | int], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(ALIYUN_TSL)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def _errors(doc: Any) -> dict[str, str]:
    with pytest.raises(InvalidInput) as info:
        tsl.parse(doc)
    return {e.loc: e.msg for e in info.value.errors}


def test_round_trip_returns_the_same_json() -> None:
    text = json.dumps(ALIYUN_TSL, ensure_ascii=False)
    model = tsl.parse(json.loads(text))
    assert json.dumps(model.to_json(), ensure_ascii=False) == text
    # the exported copy is independent of the model
    model.to_json()["properties"].clear()
    assert len(model.to_json()["properties"]) == len(ALIYUN_TSL["properties"])


def test_parsed_types_and_specs() -> None:
    model = tsl.parse(ALIYUN_TSL)
    assert model.property_ids[:3] == ("SpindleSpeed", "Temperature", "Power")
    temp = model.get_property("Temperature")
    assert temp is not None and temp.required and not temp.writable
    assert (temp.data_type.type, temp.data_type.min, temp.data_type.max) == ("float", -40, 120.5)
    assert temp.data_type.step == pytest.approx(0.1) and temp.data_type.unit == "°C"
    run = model.get_property("RunState")
    assert run is not None and run.data_type.enum == {0: "空闲", 1: "运行", 2: "故障", 3: "停机"}
    prog = model.get_property("ProgramName")
    assert prog is not None and prog.writable and prog.data_type.length == 255
    geo = model.get_property("GeoLocation")
    assert geo is not None and geo.data_type.fields is not None
    assert [f.identifier for f in geo.data_type.fields] == ["Longitude", "Latitude"]
    axis = model.get_property("AxisLoad")
    assert axis is not None and axis.data_type.size == 5
    assert axis.data_type.item is not None and axis.data_type.item.type == "float"
    assert [e.type for e in model.events] == ["info", "alert"]
    get = model.services[1]
    assert [p.identifier for p in get.input] == ["SpindleSpeed", "Temperature"]
    assert model.services[2].call_type == "sync"
    assert model.get_property("Nope") is None


def test_minimal_document_defaults() -> None:
    model = tsl.parse(
        {"properties": [{"identifier": "t", "name": "T", "dataType": {"type": "double"}}]}
    )
    p = model.properties[0]
    assert p.access_mode == "rw" and not p.required and p.data_type.min is None
    assert tsl.parse(tsl.empty_document("k")).properties == ()


@pytest.mark.parametrize(
    ("path", "value", "loc", "msg"),
    [
        (
            ["properties", 1, "dataType", "specs", "min"],
            "200",
            "properties[1].dataType.specs.min",
            "must be <= max",
        ),
        (
            ["properties", 1, "dataType", "specs", "step"],
            "0",
            "properties[1].dataType.specs.step",
            "must be > 0",
        ),
        (
            ["properties", 1, "dataType", "specs", "max"],
            "hot",
            "properties[1].dataType.specs.max",
            "number",
        ),
        (
            ["properties", 0, "dataType", "specs", "max"],
            "10.5",
            "properties[0].dataType.specs.max",
            "integer",
        ),
        (
            ["properties", 2, "dataType", "type"],
            "decimal",
            "properties[2].dataType.type",
            "input should be",
        ),
        (
            ["properties", 2, "identifier"],
            "has space",
            "properties[2].identifier",
            "letters, digits or underscores",
        ),
        (
            ["properties", 2, "identifier"],
            "x" * 51,
            "properties[2].identifier",
            "letters, digits or underscores",
        ),
        (
            ["properties", 2, "identifier"],
            "SpindleSpeed",
            "properties[2].identifier",
            "duplicate identifier 'SpindleSpeed'",
        ),
        (["properties", 3, "accessMode"], "w", "properties[3].accessMode", "'r' or 'rw'"),
        (
            ["properties", 3, "dataType", "specs"],
            {"0": "off", "2": "on"},
            "properties[3].dataType.specs.2",
            "bool keys must be 0 and 1",
        ),
        (
            ["properties", 4, "dataType", "specs"],
            {"idle": "0"},
            "properties[4].dataType.specs.idle",
            "keys must be integers",
        ),
        (
            ["properties", 5, "dataType", "specs", "length"],
            "-1",
            "properties[5].dataType.specs.length",
            "greater than 0",
        ),
        (
            ["properties", 7, "dataType", "specs", 1, "dataType", "specs", "min"],
            "91",
            "properties[7].dataType.specs[1].dataType.specs.min",
            "must be <= max",
        ),
        (
            ["properties", 7, "dataType", "specs", 1, "identifier"],
            "Longitude",
            "properties[7].dataType.specs[1].identifier",
            "duplicate identifier",
        ),
        (
            ["properties", 8, "dataType", "specs", "size"],
            "0",
            "properties[8].dataType.specs.size",
            "greater than 0",
        ),
        (
            ["properties", 8, "dataType", "specs", "item"],
            {"type": "array"},
            "properties[8].dataType.specs.item.specs",
            "must be an object",
        ),
        (["events", 1, "type"], "fatal", "events[1].type", "'info', 'alert' or 'error'"),
        (
            ["events", 1, "outputData", 0, "dataType"],
            {"type": "int", "specs": {"min": "x"}},
            "events[1].outputData[0].dataType.specs.min",
            "number",
        ),
        (["services", 2, "callType"], "later", "services[2].callType", "'async' or 'sync'"),
        (
            ["services", 2, "inputData", 0, "dataType", "specs", "min"],
            "5",
            "services[2].inputData[0].dataType.specs.min",
            "must be <= max",
        ),
        (["services", 1, "identifier"], "set", "services[1].identifier", "duplicate"),
    ],
)
def test_errors_name_the_path(path: list[str | int], value: Any, loc: str, msg: str) -> None:
    errors = _errors(_with(path, value))
    assert loc in errors, errors
    assert msg in errors[loc]


def test_missing_fields_and_wrong_shapes() -> None:
    doc = copy.deepcopy(ALIYUN_TSL)
    del doc["properties"][0]["dataType"]
    del doc["properties"][1]["name"]
    doc["properties"][2] = "Power"
    errors = _errors(doc)
    assert errors["properties[0].dataType"] == "is required"
    assert errors["properties[1].name"] == "is required"
    assert errors["properties[2]"] == "must be an object, not str"
    assert "must be an object" in _errors([1, 2])[""]
    assert "list" in _errors({"properties": {"a": 1}})["properties"]


def test_message_summarises_first_error_and_count() -> None:
    doc = _with(["properties", 1, "dataType", "specs", "min"], "500")
    doc["events"][0]["type"] = "bogus"
    with pytest.raises(InvalidInput) as info:
        tsl.parse(doc)
    assert info.value.detail.startswith("invalid thing model: properties[1].dataType.specs.min")
    assert "(and 1 more)" in info.value.detail
    assert info.value.errors[1].loc == "events[0].type"


def test_input_is_not_modified_and_is_copied() -> None:
    doc = copy.deepcopy(ALIYUN_TSL)
    model = tsl.parse(doc)
    assert doc == ALIYUN_TSL
    doc["properties"].clear()
    assert len(model.properties) == len(ALIYUN_TSL["properties"])
    assert model.to_json() == ALIYUN_TSL
