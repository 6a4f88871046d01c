"""Signal utilities.

Resampling, interpolation and rolling statistics are checked against small cases worked by
hand from the definitions in each test (there is no published table for them), plus brute-force
cross-checks. Unit conversions are checked against NIST Special Publication 811 (2008),
Appendix B.8 (factors for units listed alphabetically) and B.9 (temperature).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from yugong.platform.components import ComponentInputError
from yugong.platform.components.library import signal as sig

nan = np.nan


def _loc(exc: pytest.ExceptionInfo[ComponentInputError]) -> str:
    return exc.value.errors[0].loc


# signal.resample ------------------------------------------------------------------------

# Hand-worked: 1 s buckets from t = 0. [0, 1) holds 1 and 3, [1, 2) holds 5 and 7, [2, 3) is
# empty, [3, 4) holds 9.
T = [0.0, 0.5, 1.0, 1.2, 3.5]
V = [1.0, 3.0, 5.0, 7.0, 9.0]


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("mean", [2.0, 6.0, nan, 9.0]),
        ("min", [1.0, 5.0, nan, 9.0]),
        ("max", [3.0, 7.0, nan, 9.0]),
        ("first", [1.0, 5.0, nan, 9.0]),
        ("last", [3.0, 7.0, nan, 9.0]),
        ("sum", [4.0, 12.0, nan, 9.0]),
    ],
)
def test_resample_by_hand(how: str, expected: list[float]) -> None:
    out = sig.resample(time=T, values=V, interval=1.0, how=how)
    np.testing.assert_array_equal(out["time"], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(out["values"], expected)
    np.testing.assert_array_equal(out["count"], [2, 2, 0, 1])


def test_resample_epoch_alignment_batch_and_duplicates() -> None:
    # Default start: the first time floored to a multiple of the interval, so 1 min buckets
    # start on whole minutes: floor(1_700_000_003.2 / 60) · 60 = 1_699_999_980.
    t0 = 1_700_000_003.2
    t = t0 + np.array([0.0, 0.0, 30.0, 130.0])  # duplicate stamps are allowed
    v = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
    out = sig.resample(time=t, values=v, interval={"value": 1, "unit": "min"})
    np.testing.assert_array_equal(out["time"], 1_699_999_980.0 + 60.0 * np.arange(3))
    # Samples at +0, +0, +30 s (03.2, 03.2, 33.2 past the bucket start) share bucket 0;
    # +130 s is 153.2 s past the start: bucket 2. Bucket 1 is empty.
    np.testing.assert_array_equal(out["values"], [[2.0, nan, 4.0], [20.0, nan, 40.0]])
    np.testing.assert_array_equal(out["count"], [3, 0, 1])


def test_resample_explicit_start_and_single_sample() -> None:
    out = sig.resample(time=T, values=V, interval=2.0, start=-2.0, how="sum")
    np.testing.assert_array_equal(out["time"], [-2.0, 0.0, 2.0])
    np.testing.assert_array_equal(out["values"], [nan, 16.0, 9.0])
    one = sig.resample(time=[5.0], values=[7.0], interval=10.0)
    np.testing.assert_array_equal(one["time"], [0.0])
    np.testing.assert_array_equal(one["values"], [7.0])


def test_resample_matches_bincount() -> None:
    rng = np.random.default_rng(4)
    t = np.sort(rng.uniform(0, 1000, 5000))
    v = rng.normal(size=5000)
    out = sig.resample(time=t, values=v, interval=7.0)
    b = (t // 7.0).astype(int)
    with np.errstate(invalid="ignore"):
        ref = np.bincount(b, v) / np.bincount(b)
    np.testing.assert_allclose(out["values"], ref, equal_nan=True)


def test_resample_bad_input() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"time": [0.0, 2.0, 1.0], "values": [1.0, 2.0, 3.0]}, "inputs.time"),
        ({"time": [0.0, 1.0, 2.0], "values": [1.0, nan, 3.0]}, "inputs.values"),
        ({"time": [0.0, 1.0, 2.0], "values": [1.0, 2.0]}, "inputs.values"),
        ({"time": [0.0, 1.0], "values": [[1.0, 2.0, 3.0]]}, "inputs.values"),
        ({"time": [0.0, 1.0], "values": [1.0, 2.0], "interval": 0.0}, "inputs.interval"),
        ({"time": [0.0, 1.0], "values": [1.0, 2.0], "interval": {"value": 1}}, "inputs.interval"),
        ({"time": [0.0, 1e9], "values": [1.0, 2.0], "interval": 1e-3}, "inputs.interval"),
        ({"time": [0.0, 1.0], "values": [1.0, 2.0], "start": 0.5}, "inputs.start"),
        ({"time": [0.0, 1.0], "values": [1.0, 2.0], "how": "median"}, "inputs.how"),
        ({"time": [], "values": []}, "inputs.time"),
    ]
    for kwargs, loc in cases:
        with pytest.raises(ComponentInputError) as exc:
            sig.resample(**({"interval": 1.0} | kwargs))
        assert _loc(exc) == loc


# signal.interpolate ---------------------------------------------------------------------

# Hand-worked: samples (0, 0), (10, 10), (20, 30), (60, 30); the gap 20..60 s is 40 s long.
TI = [0.0, 10.0, 20.0, 60.0]
VI = [0.0, 10.0, 30.0, 30.0]
NEW = [5.0, 10.0, 15.0, 40.0, 60.0, 65.0, -1.0]


@pytest.mark.parametrize(
    ("method", "max_gap", "expected"),
    [
        # linear: v(5) = 5, v(15) = 10 + 20·0.5 = 20, v(40) = 30; outside the data NaN.
        ("linear", None, [5.0, 10.0, 20.0, 30.0, 30.0, nan, nan]),
        # with max_gap 15 s, 40 s lies in a 40 s gap: NaN; 60 s is a sample: kept.
        ("linear", 15.0, [5.0, 10.0, 20.0, nan, 30.0, nan, nan]),
        # previous: hold the last sample; before the first NaN; after the last held.
        ("previous", None, [0.0, 10.0, 10.0, 30.0, 30.0, 30.0, nan]),
        # max_gap 15 s: 40 s is 20 s after the held sample (NaN); 65 s is 5 s after.
        ("previous", 15.0, [0.0, 10.0, 10.0, nan, 30.0, 30.0, nan]),
        # nearest: 5 s is a tie and takes the later sample; 15 s likewise.
        ("nearest", None, [10.0, 10.0, 30.0, 30.0, 30.0, nan, nan]),
        ("nearest", 15.0, [10.0, 10.0, 30.0, nan, 30.0, nan, nan]),
    ],
)
def test_interpolate_by_hand(method: str, max_gap: float | None, expected: list[float]) -> None:
    out = sig.interpolate(time=TI, values=VI, new_time=NEW, method=method, max_gap=max_gap)
    np.testing.assert_array_equal(out["values"], expected)


def test_interpolate_nearest_picks_closer_sample() -> None:
    out = sig.interpolate(time=TI, values=VI, new_time=[4.0, 6.0, 35.0, 45.0], method="nearest")
    np.testing.assert_array_equal(out["values"], [0.0, 10.0, 30.0, 30.0])


def test_interpolate_matches_numpy_and_batches() -> None:
    rng = np.random.default_rng(5)
    t = np.cumsum(rng.uniform(0.1, 2.0, 500))
    v = rng.normal(size=(3, 500))
    new = rng.uniform(t[0], t[-1], 1000)  # unsorted on purpose
    out = sig.interpolate(time=t, values=v, new_time=new)["values"]
    assert out.shape == (3, 1000)
    for row in range(3):
        np.testing.assert_allclose(out[row], np.interp(new, t, v[row]), rtol=1e-12, atol=1e-12)
    prev = sig.interpolate(time=t, values=v[0], new_time=new, method="previous")["values"]
    np.testing.assert_array_equal(prev, v[0][np.searchsorted(t, new, side="right") - 1])


def test_interpolate_bad_input() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"time": [0.0, 1.0, 1.0], "values": [1.0, 2.0, 3.0]}, "inputs.time"),
        ({"time": [0.0, 2.0, 1.0], "values": [1.0, 2.0, 3.0]}, "inputs.time"),
        ({"time": [0.0, 1.0, 2.0], "values": [1.0, nan, 3.0]}, "inputs.values"),
        ({"time": [0.0, 1.0, 2.0], "values": [1.0, 3.0]}, "inputs.values"),
        ({"time": [0.0, 1.0], "values": [1.0, 3.0], "new_time": [nan]}, "inputs.new_time"),
        ({"time": [0.0, 1.0], "values": [1.0, 3.0], "max_gap": 0.0}, "inputs.max_gap"),
        ({"time": [0.0, 1.0], "values": [1.0, 3.0], "method": "cubic"}, "inputs.method"),
        (
            {"time": [0.0, 1.0], "values": [1.0, 3.0], "new_time": {"value": [0.5]}},
            "inputs.new_time",
        ),
    ]
    for kwargs, loc in cases:
        with pytest.raises(ComponentInputError) as exc:
            sig.interpolate(**({"new_time": [0.5]} | kwargs))
        assert _loc(exc) == loc


# signal.rolling -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statistic", "values", "expected"),
    [
        # Hand-worked, window 3 ending at each sample.
        ("mean", [1, 2, 3, 4, 5], [nan, nan, 2.0, 3.0, 4.0]),
        ("std", [1, 2, 3, 4, 5], [nan, nan, 1.0, 1.0, 1.0]),  # sample std of 3 consecutive
        ("min", [5, 1, 4, 2, 3], [nan, nan, 1.0, 1.0, 2.0]),
        ("max", [5, 1, 4, 2, 3], [nan, nan, 5.0, 4.0, 4.0]),
        ("median", [5, 1, 4, 2, 3], [nan, nan, 4.0, 2.0, 3.0]),
    ],
)
def test_rolling_by_hand(statistic: str, values: list[float], expected: list[float]) -> None:
    out = sig.rolling(values=values, window=3, statistic=statistic)["values"]
    np.testing.assert_allclose(out, expected, equal_nan=True, atol=1e-12)


@pytest.mark.parametrize(
    ("window", "statistic"),
    [
        (w, s)
        for w in (1, 2, 7, 50, 300)
        for s in ("mean", "std", "min", "max", "median")
        if not (s == "std" and w == 1)  # a standard deviation needs two samples
    ],
)
def test_rolling_matches_brute_force(window: int, statistic: str) -> None:
    rng = np.random.default_rng(window)
    # A random walk on a large offset, as a sensor reading might be.
    x = 1e6 + rng.normal(size=(3, 300)).cumsum(axis=-1)
    out = sig.rolling(values=x, window=window, statistic=statistic)["values"]
    ref = getattr(np, statistic)(
        sliding_window_view(x, window, axis=-1),
        axis=-1,
        **({"ddof": 1} if statistic == "std" else {}),
    )
    assert np.isnan(out[:, : window - 1]).all()
    np.testing.assert_allclose(out[:, window - 1 :], ref, rtol=1e-9, atol=1e-7)


def test_rolling_bad_input() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"values": [1.0, 2.0], "window": 3}, "inputs.window"),
        ({"values": [1.0, 2.0], "window": 0}, "inputs.window"),
        ({"values": [1.0, 2.0], "window": 1, "statistic": "std"}, "inputs.window"),
        ({"values": [1.0, 2.0], "window": 2, "statistic": "range"}, "inputs.statistic"),
        ({"values": [1.0, nan], "window": 1}, "inputs.values"),
        ({"values": np.zeros((2, 2, 2)), "window": 1}, "inputs.values"),
        ({"values": [], "window": 1}, "inputs.values"),
    ]
    for kwargs, loc in cases:
        with pytest.raises(ComponentInputError) as exc:
            sig.rolling(**kwargs)
        assert _loc(exc) == loc


# signal.convert_units -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_unit", "to_unit", "factor", "tol"),
    [
        # NIST SP 811 (2008) Appendix B.8, factors to 7 significant digits.
        pytest.param("psi", "Pa", 6.894757e3, 5e-4, id="psi-Pa-6.894757E+03"),
        pytest.param("psi", "kPa", 6.894757, 5e-7, id="psi-kPa"),
        pytest.param("hp", "W", 7.456999e2, 5e-5, id="hp-W-7.456999E+02"),
        pytest.param("lbf", "N", 4.448222, 5e-7, id="lbf-N-4.448222E+00"),
        pytest.param("Btu", "J", 1.055056e3, 5e-4, id="BtuIT-J-1.055056E+03"),
        pytest.param("gallon", "m**3", 3.785412e-3, 5e-10, id="galUS-m3-3.785412E-03"),
        pytest.param("inch", "m", 2.54e-2, 1e-15, id="in-m-2.54E-02-exact"),
        pytest.param("kWh", "J", 3.6e6, 1e-6, id="kWh-J-3.6E+06-exact"),
    ],
)
def test_convert_units_nist_sp811(from_unit: str, to_unit: str, factor: float, tol: float) -> None:
    out = sig.convert_units(values=1.0, from_unit=from_unit, to_unit=to_unit)["values"]
    assert out == pytest.approx(factor, abs=tol)


def test_convert_temperature_nist_sp811() -> None:
    # NIST SP 811 Appendix B: t/°C = (t/°F - 32)/1.8, so 212 °F = 100 °C, 32 °F = 0 °C, -40 = -40.
    out = sig.convert_units(values=[212.0, 32.0, -40.0, 98.6], from_unit="degF", to_unit="degC")
    np.testing.assert_allclose(out["values"], [100.0, 0.0, -40.0, 37.0], atol=1e-9)
    # A temperature difference has no offset: 1.8 Δ°F = 1 K.
    diff = sig.convert_units(values=1.8, from_unit="delta_degF", to_unit="K")["values"]
    assert diff == pytest.approx(1.0)


def test_convert_units_arrays_and_revolutions() -> None:
    out = sig.convert_units(values=[[1.0, 2.0], [3.0, 4.0]], from_unit="m**3/h", to_unit="L/s")
    np.testing.assert_allclose(out["values"], np.array([[1.0, 2.0], [3.0, 4.0]]) / 3.6)
    # revolution/minute -> revolution/second divides by 60 (a rotation frequency).
    rps = sig.convert_units(values=1797.0, from_unit="rpm", to_unit="revolution/s")["values"]
    assert rps == pytest.approx(29.95)


def test_rpm_to_hz() -> None:
    hz = sig.convert_units(values=1797.0, from_unit="rpm", to_unit="Hz")["values"]
    assert hz == pytest.approx(29.95)


def test_convert_units_bad_input() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"from_unit": "furlongs_per_blip", "to_unit": "m"}, "inputs.from_unit"),
        ({"from_unit": "m", "to_unit": "parsecz"}, "inputs.to_unit"),
        ({"from_unit": "psi", "to_unit": "kg"}, "inputs.to_unit"),
        ({"from_unit": "m", "to_unit": "ft", "values": nan}, "inputs.values"),
        ({"from_unit": "m", "to_unit": "ft", "values": "ten"}, "inputs.values"),
        ({"from_unit": 3, "to_unit": "ft"}, "inputs.from_unit"),
    ]
    for kwargs, loc in cases:
        with pytest.raises(ComponentInputError) as exc:
            sig.convert_units(**({"values": 1.0} | kwargs))
        assert _loc(exc) == loc
    with pytest.raises(ComponentInputError, match="different dimensions"):
        sig.convert_units(values=1.0, from_unit="psi", to_unit="kg")
