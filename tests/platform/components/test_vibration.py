"""Vibration components checked against published values.

Sources:
- Randall, "Vibration-based Condition Monitoring", Wiley 2011: sine RMS A/√2, crest
  factor √2, kurtosis 1.5; Gaussian kurtosis 3.
- Heinzel, Rüdiger, Schilling, "Spectrum and spectral density estimation by the DFT", MPI für
  Gravitationsphysik 2002: coherent-gain normalisation and the maximum amplitude error
  (scalloping loss) of each window: rectangular -3.9224 dB, Hanning -1.4236 dB,
  Hamming -1.7514 dB; flat-top windows a few hundredths of a dB at most.
- Randall & Antoni, "Rolling element bearing diagnostics - A tutorial", MSSP 25 (2011):
  envelope analysis; bearing characteristic frequency formulas.
- Case Western Reserve University Bearing Data Center, "Bearing information": SKF 6205-2RS JEM
  (drive end) and 6203-2RS JEM (fan end) geometry and defect frequencies.
- ISO 10816-1:1995 Annex B Table B.1; ISO 10816-3:2009 Annex A Tables A.1 and A.2.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import scipy.signal
import scipy.stats

from yugong.platform.components import ComponentInputError
from yugong.platform.components.library import vibration as vib


def _loc(exc: pytest.ExceptionInfo[ComponentInputError]) -> str:
    return exc.value.errors[0].loc


def _sine(amp: float, freq: float, fs: float, n: int, phase: float = 0.3) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / fs + phase)


# vibration.features ---------------------------------------------------------------------


def test_sine_features_randall() -> None:
    # Randall 2011: a sine of amplitude A has RMS A/√2, crest factor √2 and kurtosis 1.5
    # (hand check: E[sin²] = 1/2, E[sin⁴] = 3/8, so kurtosis = (3/8)/(1/2)² = 1.5).
    a = 2.5
    x = _sine(a, 50.0, 10_000.0, 10_000, phase=0.0)  # 50 periods, 200 samples each
    out = vib.features(x=x)
    assert out["rms"] == pytest.approx(a / math.sqrt(2), rel=1e-9)
    assert out["peak"] == pytest.approx(a, rel=1e-6)
    assert out["peak_to_peak"] == pytest.approx(2 * a, rel=1e-6)
    assert out["crest_factor"] == pytest.approx(math.sqrt(2), rel=1e-6)
    assert out["kurtosis"] == pytest.approx(1.5, rel=1e-9)
    assert out["skewness"] == pytest.approx(0.0, abs=1e-9)


def test_gaussian_kurtosis_is_three() -> None:
    # Randall 2011: Gaussian noise has kurtosis 3 and skewness 0. Sampling standard
    # errors for N = 10⁶ are √(24/N) ≈ 0.005 and √(6/N) ≈ 0.0025; tolerances are 6 of them.
    x = np.random.default_rng(7).normal(0.0, 3.0, 1_000_000)
    out = vib.features(x=x)
    assert out["kurtosis"] == pytest.approx(3.0, abs=0.03)
    assert out["skewness"] == pytest.approx(0.0, abs=0.015)
    assert out["rms"] == pytest.approx(3.0, rel=0.005)


def test_square_wave_by_hand() -> None:
    # Hand derivation: a ±A square wave has |x| = A everywhere, so RMS = peak = A, crest
    # factor 1, and m4/m2² = A⁴/A⁴ = 1.
    x = np.tile([1.0, 1.0, -1.0, -1.0], 250) * 4.0
    out = vib.features(x=x)
    assert out["rms"] == pytest.approx(4.0)
    assert out["crest_factor"] == pytest.approx(1.0)
    assert out["kurtosis"] == pytest.approx(1.0)


def test_features_batch_rows_and_scipy_cross_check() -> None:
    rng = np.random.default_rng(3)
    x = np.vstack(
        [_sine(1.0, 5.0, 1000.0, 1000), rng.standard_t(5, 1000), rng.exponential(size=1000)]
    )
    out = vib.features(x=x)
    assert out["kurtosis"].shape == (3,)
    assert out["kurtosis"][0] == pytest.approx(1.5)
    # Population (biased) moments, as scipy.stats computes by default.
    np.testing.assert_allclose(out["kurtosis"], scipy.stats.kurtosis(x, axis=-1, fisher=False))
    np.testing.assert_allclose(out["skewness"], scipy.stats.skew(x, axis=-1), atol=1e-12)
    for i in range(3):
        assert vib.features(x=x[i])["crest_factor"] == pytest.approx(out["crest_factor"][i])


def test_features_remove_mean() -> None:
    x = _sine(2.0, 10.0, 1000.0, 1000) + 10.0
    assert vib.features(x=x)["rms"] == pytest.approx(math.sqrt(2.0))
    raw = vib.features(x=x, remove_mean=False)
    assert raw["rms"] == pytest.approx(math.sqrt(2.0 + 100.0))  # mean(x²) = A²/2 + DC²
    assert raw["kurtosis"] == pytest.approx(1.5)  # moments are always central


def test_features_bad_input() -> None:
    with pytest.raises(ComponentInputError, match="constant") as exc:
        vib.features(x=np.vstack([np.ones(10), np.arange(10.0)]))
    assert _loc(exc) == "inputs.x"
    with pytest.raises(ComponentInputError) as exc:
        vib.features(x=np.zeros((2, 2, 5)))
    assert _loc(exc) == "inputs.x"
    with pytest.raises(ComponentInputError) as exc:
        vib.features(x=[1.0, float("nan"), 2.0])
    assert _loc(exc) == "inputs.x"
    with pytest.raises(ComponentInputError) as exc:
        vib.features(x=[1.0])
    assert _loc(exc) == "inputs.x"


# vibration.spectrum -------------------------------------------------------------------------


@pytest.mark.parametrize("window", ["hann", "hamming", "flattop", "rectangular"])
def test_bin_centred_sine_reads_its_amplitude(window: str) -> None:
    # Heinzel 2002: dividing by the coherent gain sum(w)/2 makes a bin-centred sine of
    # amplitude A read A whatever the window. fs = 1024 Hz, N = 1024: 1 Hz bins.
    x = _sine(3.0, 100.0, 1024.0, 1024) + 0.5
    out = vib.spectrum(x=x, sample_rate=1024.0, window=window)
    freq, amp = out["frequency"], out["amplitude"]
    assert freq.shape == amp.shape == (513,)
    assert freq[100] == pytest.approx(100.0)
    assert freq[-1] == pytest.approx(512.0)
    assert amp[100] == pytest.approx(3.0, rel=1e-9)
    assert amp[0] == pytest.approx(0.5, rel=1e-9)  # DC reads the mean, not twice it
    assert np.argmax(amp) == 100


@pytest.mark.parametrize(
    ("window", "loss_db"),
    [
        pytest.param("rectangular", -3.9224, id="rectangular-Heinzel-3.9224dB"),
        pytest.param("hann", -1.4236, id="hann-Heinzel-1.4236dB"),
        pytest.param("hamming", -1.7514, id="hamming-Heinzel-1.7514dB"),
    ],
)
def test_half_bin_scalloping_loss_heinzel(window: str, loss_db: float) -> None:
    # A sine half-way between bins reads A·10^(loss/20), the window's maximum amplitude error
    # (Heinzel 2002). N is large and f near fs/4 so leakage from the -f image is negligible.
    n = 65536
    x = _sine(1.0, n / 4 + 0.5, float(n), n)
    amp = vib.spectrum(x=x, sample_rate=float(n), window=window)["amplitude"]
    assert 20 * np.log10(amp.max()) == pytest.approx(loss_db, abs=0.001)


def test_flattop_reads_amplitude_between_bins() -> None:
    # Flat-top windows keep the amplitude error over a bin to a few hundredths of a dB
    # (Heinzel 2002, flat-top windows); checked at 0.02 dB for offsets across a bin.
    fs, n = 10_000.0, 8192
    df = fs / n
    for offset in np.linspace(0.0, 0.5, 11):
        f = 1234 * df + offset * df
        amp = vib.spectrum(x=_sine(3.7, f, fs, n), sample_rate=fs, window="flattop")["amplitude"]
        assert 20 * np.log10(amp.max() / 3.7) == pytest.approx(0.0, abs=0.02)
        assert abs(np.argmax(amp) - 1234) <= 1


@pytest.mark.parametrize("n", [16, 17, 101, 1000])
@pytest.mark.parametrize(
    ("window", "scipy_name"),
    [("hann", "hann"), ("hamming", "hamming"), ("flattop", "flattop"), ("rectangular", "boxcar")],
)
def test_spectrum_equals_explicit_window(n: int, window: str, scipy_name: str) -> None:
    # The windowing is done as a convolution of the spectrum; it must equal multiplying by the
    # periodic window from scipy.signal.get_window.
    x = np.random.default_rng(n).normal(size=(2, n))
    w = scipy.signal.get_window(scipy_name, n, fftbins=True)
    ref = np.abs(np.fft.rfft(x * w, axis=-1)) * 2 / w.sum()
    ref[:, 0] /= 2
    if n % 2 == 0:
        ref[:, -1] /= 2
    got = vib.spectrum(x=x, sample_rate=1.0, window=window)["amplitude"]
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_spectrum_batch_and_units() -> None:
    x = np.vstack([_sine(1.0, 50.0, 1000.0, 1000), _sine(2.0, 120.0, 1000.0, 1000)])
    out = vib.spectrum(x=x, sample_rate={"value": 1.0, "unit": "kHz"})
    assert out["amplitude"].shape == (2, 501)
    assert out["amplitude"][0, 50] == pytest.approx(1.0)
    assert out["amplitude"][1, 120] == pytest.approx(2.0)


def test_spectrum_bad_input() -> None:
    x = np.zeros(64)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"x": x, "sample_rate": 0.0}, "inputs.sample_rate"),
        ({"x": x, "sample_rate": {"value": 100.0}}, "inputs.sample_rate"),
        ({"x": x, "sample_rate": 100.0, "window": "blackman"}, "inputs.window"),
        ({"x": np.zeros(8), "sample_rate": 100.0}, "inputs.x"),
        ({"x": np.zeros((2, 2, 32)), "sample_rate": 100.0}, "inputs.x"),
        ({"x": x, "sample_rate": {"value": 100.0, "unit": "m"}}, "inputs.sample_rate"),
    ]
    for kwargs, loc in cases:
        with pytest.raises(ComponentInputError) as exc:
            vib.spectrum(**kwargs)
        assert _loc(exc) == loc


# vibration.envelope_spectrum --------------------------------------------------------------


def _am(fs: float, n: int, carrier: float, fm: float, a: float, m: float) -> np.ndarray:
    t = np.arange(n) / fs
    return a * (1 + m * np.cos(2 * np.pi * fm * t)) * np.cos(2 * np.pi * carrier * t)


def test_envelope_of_am_carrier() -> None:
    # Randall & Antoni 2011, sec. 3: a fault modulates a resonance; the envelope of
    # A(1 + m·cos 2πf_m t)·cos 2πf_c t is A(1 + m·cos 2πf_m t), so the envelope spectrum
    # shows A·m at f_m (hand derivation). Carrier 3 kHz, f_m = 87 Hz, A = 2, m = 0.5;
    # 1 s at 48 kHz puts 87 Hz on a bin. Noise 10 % of the carrier.
    fs, n = 48_000.0, 48_000
    x = _am(fs, n, 3000.0, 87.0, 2.0, 0.5)
    x += 0.2 * np.random.default_rng(1).standard_normal(n)
    out = vib.envelope_spectrum(x=x, sample_rate=fs, band_low=2000.0, band_high=4000.0)
    freq, amp = out["frequency"], out["amplitude"]
    k = int(np.argmax(amp))
    assert freq[k] == pytest.approx(87.0)
    assert amp[k] == pytest.approx(1.0, rel=0.02)
    # No band: the clean signal's envelope reads A·m exactly.
    clean = vib.envelope_spectrum(x=_am(fs, n, 3000.0, 87.0, 2.0, 0.5), sample_rate=fs)
    assert clean["amplitude"][87] == pytest.approx(1.0, rel=1e-3)


def test_envelope_finds_outer_race_fault_cwru_6205() -> None:
    # CWRU drive-end bearing SKF 6205-2RS at 1797 r/min: BPFO = 3.5848 × 29.95 Hz = 107.36 Hz.
    # An outer-race fault: one decaying 3.2 kHz resonance burst per ball pass, plus noise.
    fs, n = 12_000.0, 24_000
    bpfo = 3.5848 * 1797 / 60
    t = np.arange(n) / fs
    tau = np.mod(t, 1 / bpfo)
    x = np.exp(-800 * tau) * np.sin(2 * np.pi * 3200 * tau)
    x += 0.3 * np.random.default_rng(2).standard_normal(n)
    out = vib.envelope_spectrum(x=x, sample_rate=fs, band_low=2500.0, band_high=4000.0)
    freq, amp = out["frequency"], out["amplitude"]
    low = freq < 500  # first harmonics of BPFO
    k = int(np.argmax(np.where(low, amp, 0)))
    assert abs(freq[k] - bpfo) <= fs / n  # within one bin (0.5 Hz)
    # The bearing component computes the same line from the CWRU geometry.
    calc = vib.bearing_frequencies(
        n_elements=9,
        ball_diameter={"value": 0.3126, "unit": "inch"},
        pitch_diameter={"value": 1.537, "unit": "inch"},
        shaft_speed={"value": 1797, "unit": "1/min"},
    )
    assert abs(freq[k] - calc["bpfo"]) <= fs / n


def test_envelope_batch_and_filters() -> None:
    fs, n = 20_000.0, 20_000
    x = np.vstack([_am(fs, n, 3000.0, 40.0, 1.0, 0.4), _am(fs, n, 5000.0, 130.0, 1.0, 0.8)])
    for kwargs in ({}, {"band_low": 1000.0}, {"band_high": 8000.0}):
        amp = vib.envelope_spectrum(x=x, sample_rate=fs, **kwargs)["amplitude"]
        assert amp.shape == (2, n // 2 + 1)
        assert np.argmax(amp[0]) == 40
        assert np.argmax(amp[1]) == 130
        assert amp[0, 40] == pytest.approx(0.4, rel=0.01)
        assert amp[1, 130] == pytest.approx(0.8, rel=0.01)


def test_envelope_million_samples() -> None:
    # Its speed is measured by benchmarks/components.py; here, the answer at full length.
    fs, n = 50_000.0, 1_000_000
    x = _am(fs, n, 3000.0, 87.0, 1.0, 0.5)
    out = vib.envelope_spectrum(x=x, sample_rate=fs, band_low=2000.0, band_high=4000.0)
    assert out["frequency"][np.argmax(out["amplitude"])] == pytest.approx(87.0)


def test_envelope_bad_input() -> None:
    x = np.zeros(1000)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"band_high": 600.0}, "inputs.band_high"),  # Nyquist is 500 Hz
        ({"band_low": 500.0}, "inputs.band_low"),
        ({"band_low": 200.0, "band_high": 100.0}, "inputs.band_high"),
        ({"band_low": 100.0, "filter_order": 0}, "inputs.filter_order"),
        ({"band_low": -1.0}, "inputs.band_low"),
    ]
    for kwargs, loc in cases:
        with pytest.raises(ComponentInputError) as exc:
            vib.envelope_spectrum(x=x, sample_rate=1000.0, **kwargs)
        assert _loc(exc) == loc
    with pytest.raises(ComponentInputError, match="more than") as exc:
        vib.envelope_spectrum(x=np.zeros(20), sample_rate=1000.0, band_low=100.0, band_high=200.0)
    assert _loc(exc) == "inputs.x"


# vibration.bearing_frequencies --------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "d_in", "pd_in", "bpfi", "bpfo", "ftf", "ball"),
    [
        pytest.param(9, 0.3126, 1.537, 5.4152, 3.5848, 0.39828, 4.7135, id="CWRU-6205-2RS-DE"),
        pytest.param(8, 0.2656, 1.122, 4.9469, 3.0530, 0.3817, 3.9874, id="CWRU-6203-2RS-FE"),
    ],
)
def test_cwru_bearing_defect_frequencies(
    n: int, d_in: float, pd_in: float, bpfi: float, bpfo: float, ftf: float, ball: float
) -> None:
    # CWRU Bearing Data Center, "Bearing information": defect frequencies as multiples of the
    # running speed (shaft at 1 Hz). Its "rolling element" column is 2×BSF (a ball defect
    # strikes both races once per spin). The pitch diameter is given to 4 digits (1.122 in is
    # ±0.0005 in, 4.5e-4 relative on d/D) and the table rounds to 4-5 digits, so 3e-4 relative.
    out = vib.bearing_frequencies(
        n_elements=n,
        ball_diameter={"value": d_in, "unit": "inch"},
        pitch_diameter={"value": pd_in, "unit": "inch"},
        shaft_speed=1.0,
    )
    assert out["bpfi"] == pytest.approx(bpfi, rel=3e-4)
    assert out["bpfo"] == pytest.approx(bpfo, rel=3e-4)
    assert out["ftf"] == pytest.approx(ftf, rel=3e-4)
    assert 2 * out["bsf"] == pytest.approx(ball, rel=3e-4)
    # BPFO + BPFI = n·f_r for any geometry (from the Randall & Antoni 2011 formulas).
    assert out["bpfo"] + out["bpfi"] == pytest.approx(n)


def test_contact_angle_by_hand() -> None:
    # Hand derivation with the Randall & Antoni 2011 formulas: d/D = 0.2, φ = 60°, so
    # r = 0.2·cos 60° = 0.1; f_r = 10 Hz, n = 10: FTF = 5·0.9 = 4.5 Hz, BPFO = 45 Hz,
    # BPFI = 10·5·1.1 = 55 Hz, BSF = 10·(1/0.4)·(1 - 0.01) = 24.75 Hz.
    out = vib.bearing_frequencies(
        n_elements=10,
        ball_diameter=10.0,
        pitch_diameter=50.0,
        contact_angle={"value": math.pi / 3, "unit": "rad"},
        shaft_speed=10.0,
    )
    assert out["ftf"] == pytest.approx(4.5)
    assert out["bpfo"] == pytest.approx(45.0)
    assert out["bpfi"] == pytest.approx(55.0)
    assert out["bsf"] == pytest.approx(24.75)


def test_bearing_frequencies_vectorise_over_speed() -> None:
    # Per-minute speeds: 1797 r/min is 29.95 Hz; CWRU 6205 BPFO = 3.5848 × 29.95 = 107.36 Hz.
    out = vib.bearing_frequencies(
        n_elements=9,
        ball_diameter=7.94,
        pitch_diameter=39.04,
        shaft_speed={"value": [1797.0, 1772.0, 1750.0, 1730.0], "unit": "1/min"},
    )
    assert out["bpfo"].shape == (4,)
    assert out["bpfo"][0] == pytest.approx(107.36, rel=2e-4)
    np.testing.assert_allclose(
        out["bpfo"] / out["bpfo"][0], [1, 1772 / 1797, 1750 / 1797, 1730 / 1797]
    )


def test_shaft_speed_in_rpm() -> None:
    out = vib.bearing_frequencies(
        n_elements=9,
        ball_diameter={"value": 0.3126, "unit": "inch"},
        pitch_diameter={"value": 1.537, "unit": "inch"},
        shaft_speed={"value": 1797, "unit": "rpm"},
    )
    assert out["bpfo"] == pytest.approx(3.5848 * 29.95, rel=1e-4)


def test_bearing_bad_input() -> None:
    good = {"n_elements": 9, "ball_diameter": 8.0, "pitch_diameter": 39.0, "shaft_speed": 25.0}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"ball_diameter": 40.0}, "inputs.ball_diameter"),
        ({"pitch_diameter": 0.0}, "inputs.pitch_diameter"),
        ({"contact_angle": 90.0}, "inputs.contact_angle"),
        ({"n_elements": 0}, "inputs.n_elements"),
        ({"n_elements": 9.5}, "inputs.n_elements"),
        ({"shaft_speed": -1.0}, "inputs.shaft_speed"),
        ({"shaft_speed": {"value": 25.0}}, "inputs.shaft_speed"),
        ({"ball_diameter": {"value": 8.0, "unit": "kg"}}, "inputs.ball_diameter"),
    ]
    for change, loc in cases:
        with pytest.raises(ComponentInputError) as exc:
            vib.bearing_frequencies(**(good | change))
        assert _loc(exc) == loc


# vibration.iso10816_zone ---------------------------------------------------------------------

# Zone boundaries A/B, B/C, C/D, mm/s r.m.s., as published:
# ISO 10816-1:1995 Annex B Table B.1 (classes I-IV); ISO 10816-3:2009 Table A.1 (group 1)
# and Table A.2 (group 2), rigid and flexible support.
PUBLISHED = {
    "I": (0.71, 1.8, 4.5),
    "II": (1.12, 2.8, 7.1),
    "III": (1.8, 4.5, 11.2),
    "IV": (2.8, 7.1, 18.0),
    "group1_rigid": (2.3, 4.5, 7.1),
    "group1_flexible": (3.5, 7.1, 11.0),
    "group2_rigid": (1.4, 2.8, 4.5),
    "group2_flexible": (2.3, 4.5, 7.1),
}


@pytest.mark.parametrize("machine_class", list(PUBLISHED))
def test_iso10816_zone_boundaries(machine_class: str) -> None:
    bounds = PUBLISHED[machine_class]
    below = [b * 0.99 for b in bounds]
    above = [b * 1.01 for b in bounds]
    out = vib.iso10816_zone(velocity_rms=below + above + list(bounds), machine_class=machine_class)
    # Just below, just above, and on each boundary (a value on a boundary is in the lower zone).
    assert out["zone"] == ["A", "B", "C", "B", "C", "D", "A", "B", "C"]
    np.testing.assert_array_equal(out["zone_index"], [0, 1, 2, 1, 2, 3, 0, 1, 2])
    assert tuple(out["boundaries"].values()) == bounds


def test_iso10816_zone_scalar_and_units() -> None:
    out = vib.iso10816_zone(velocity_rms=0.0, machine_class="II")
    assert out["zone"] == "A"
    assert out["zone_index"] == 0
    # 0.2 in/s = 5.08 mm/s: group 2 on a rigid foundation, zone D (above 4.5 mm/s).
    out = vib.iso10816_zone(
        velocity_rms={"value": 0.2, "unit": "in/s"}, machine_class="group2_rigid"
    )
    assert out["zone"] == "D"
    out = vib.iso10816_zone(velocity_rms=[[1.0, 3.0], [5.0, 12.0]], machine_class="group1_flexible")
    assert out["zone"] == [["A", "A"], ["B", "D"]]


def test_iso10816_bad_input() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"velocity_rms": -0.1, "machine_class": "I"}, "inputs.velocity_rms"),
        ({"velocity_rms": 1.0, "machine_class": "V"}, "inputs.machine_class"),
        ({"velocity_rms": {"value": 1.0}, "machine_class": "I"}, "inputs.velocity_rms"),
        (
            {"velocity_rms": {"value": 1.0, "unit": "mm"}, "machine_class": "I"},
            "inputs.velocity_rms",
        ),
        ({"velocity_rms": "fast", "machine_class": "I"}, "inputs.velocity_rms"),
    ]
    for kwargs, loc in cases:
        with pytest.raises(ComponentInputError) as exc:
            vib.iso10816_zone(**kwargs)
        assert _loc(exc) == loc
