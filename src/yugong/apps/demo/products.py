"""Thing models (TSL JSON) of the demo plant's machines."""

from __future__ import annotations

from typing import Any


def _num(
    identifier: str,
    name: str,
    type_: str,
    lo: float,
    hi: float,
    unit: str,
    unit_name: str,
    step: float = 0.01,
    mode: str = "r",
) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "name": name,
        "accessMode": mode,
        "required": False,
        "dataType": {
            "type": type_,
            "specs": {
                "min": str(lo),
                "max": str(hi),
                "unit": unit,
                "unitName": unit_name,
                "step": str(step),
            },
        },
    }


def _enum(identifier: str, name: str, values: dict[str, str]) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "name": name,
        "accessMode": "r",
        "required": False,
        "dataType": {"type": "enum", "specs": values},
    }


def _bool(identifier: str, name: str, off: str, on: str, mode: str = "r") -> dict[str, Any]:
    return {
        "identifier": identifier,
        "name": name,
        "accessMode": mode,
        "required": False,
        "dataType": {"type": "bool", "specs": {"0": off, "1": on}},
    }


def _tsl(
    key: str, properties: list[dict[str, Any]], events: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
        "profile": {"version": "1.0", "productKey": key},
        "properties": properties,
        "events": events or [],
        "services": [],
    }


CNC = _tsl(
    "cnc-machine",
    [
        _num("spindle_speed", "主轴转速", "float", 0, 24000, "r/min", "转每分钟", 1),
        _num("spindle_load", "主轴负载", "float", 0, 120, "%", "百分比", 0.1),
        _num("temperature", "主轴温度", "float", -20, 90, "°C", "摄氏度", 0.1),
        _num("vibration", "振动速度", "float", 0, 20, "mm/s", "毫米每秒", 0.01),
        _enum("state", "运行状态", {"0": "停机", "1": "运行", "2": "待料", "3": "报警"}),
        _num("part_count", "加工件数", "int", 0, 10_000_000, "pcs", "件", 1),
    ],
    events=[
        {
            "identifier": "alarm",
            "name": "设备报警",
            "type": "alert",
            "method": "thing.event.alarm.post",
            "outputData": [
                {
                    "identifier": "code",
                    "name": "报警代码",
                    "dataType": {"type": "int", "specs": {"min": "0", "max": "9999", "step": "1"}},
                }
            ],
        }
    ],
)

COMPRESSOR = _tsl(
    "air-compressor",
    [
        _num("discharge_pressure", "排气压力", "float", 0, 1.6, "MPa", "兆帕", 0.001),
        _num("motor_current", "电机电流", "float", 0, 400, "A", "安培", 0.1),
        _num("oil_temperature", "油温", "float", -20, 120, "°C", "摄氏度", 0.1),
        _bool("running", "运行", "停止", "运行"),
    ],
)

METER = _tsl(
    "energy-meter",
    [
        _num("active_power", "有功功率", "double", -10000, 10000, "kW", "千瓦", 0.01),
        _num("reactive_power", "无功功率", "double", -10000, 10000, "kvar", "千乏", 0.01),
        _num("voltage", "线电压", "float", 0, 500, "V", "伏特", 0.1),
        _num("power_factor", "功率因数", "float", -1, 1, "", "无", 0.001),
        _num("energy", "有功电能", "double", 0, 1e12, "kWh", "千瓦时", 0.01),
    ],
)

# product key -> (name, TSL)
PRODUCTS: dict[str, tuple[str, dict[str, Any]]] = {
    "cnc-machine": ("数控加工中心 CNC machining centre", CNC),
    "air-compressor": ("螺杆空压机 Screw air compressor", COMPRESSOR),
    "energy-meter": ("电能表 Energy meter", METER),
}
