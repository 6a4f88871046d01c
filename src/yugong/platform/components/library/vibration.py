"""Vibration analysis: time-domain features, amplitude and envelope spectra, rolling-element
bearing defect frequencies and ISO 10816 severity zones.

Signals are 1-D arrays, or 2-D arrays holding one independent signal per row; every result is
computed along the last axis in one vectorised call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from yugong.platform.components import Category, Port, bad_input, component

FloatArray = npt.NDArray[np.float64]

WINDOWS = ("hann", "hamming", "flattop", "rectangular")
# Every window offered is a cosine sum w[k] = a0 - a1·cos(2πk/N) + a2·cos(4πk/N) - ...
# (periodic form, as listed by Heinzel et al. 2002; the flat-top coefficients are those of
# scipy.signal.windows.flattop, after D'Antona & Ferrero 2006). Windowing is then a short
# convolution of the spectrum, which is cheaper than building and applying the window.
COSINE_WINDOWS: dict[str, tuple[float, ...]] = {
    "rectangular": (1.0,),
    "hann": (0.5, 0.5),
    "hamming": (0.54, 0.46),
    "flattop": (0.21557895, 0.41663158, 0.277263158, 0.083578947, 0.006947368),
}

RANDALL_2011 = (
    "R. B. Randall, Vibration-based Condition Monitoring: Industrial, Aerospace and Automotive "
    "Applications, Wiley, 2011"
)
HEINZEL_2002 = (
    "G. Heinzel, A. Rüdiger, R. Schilling, Spectrum and spectral density estimation by the "
    "Discrete Fourier transform (DFT), including a comprehensive list of window functions and "
    "some new flat-top windows, Max-Planck-Institut für Gravitationsphysik, 2002"
)
RANDALL_ANTONI_2011 = (
    "R. B. Randall, J. Antoni, Rolling element bearing diagnostics - A tutorial, Mechanical "
    "Systems and Signal Processing 25 (2011) 485-520"
)


def _scalar_or_array(a: FloatArray) -> float | FloatArray:
    return float(a) if a.ndim == 0 else a


# Time-domain features ---------------------------------------------------------------------


@component(
    "vibration.features",
    "1.0.0",
    Category.STATISTICAL,
    title="Vibration time-domain features: RMS, peak, crest factor, kurtosis, skewness",
    industries=("general", "discrete", "process", "energy", "power", "mining", "oil_gas"),
    references=(RANDALL_2011 + " (RMS, crest factor and kurtosis as fault indicators)",),
    inputs={
        "x": Port.series(
            None,
            "Vibration signal (acceleration, velocity or displacement); one signal per row "
            "for a batch. RMS and peak outputs carry the same unit",
            min_length=2,
            batch=True,
        ),
        "remove_mean": Port.boolean(
            "Subtract the signal mean before RMS and peak (removes a sensor DC offset)"
        ).optional(True),
    },
    outputs={
        "rms": Port.quantity(None, "Root mean square"),
        "peak": Port.quantity(None, "Peak: largest absolute value"),
        "peak_to_peak": Port.quantity(None, "Maximum minus minimum"),
        "crest_factor": Port.quantity(None, "Peak / RMS"),
        "kurtosis": Port.quantity(None, "Pearson kurtosis m4/m2² (3 for a Gaussian signal)"),
        "skewness": Port.quantity(None, "Skewness m3/m2^1.5 (0 for a symmetric signal)"),
    },
)
def features(x: FloatArray, remove_mean: bool) -> dict[str, Any]:
    """Time-domain condition indicators of a vibration signal, per row for a batch.

    RMS = sqrt(mean(x²)), peak = max|x|, crest factor = peak / RMS; kurtosis m4/m2² and
    skewness m3/m2^1.5 are taken about the mean (population moments, no bias correction).
    With ``remove_mean`` (default) RMS and peak use x - mean(x), so a DC offset does not count
    as vibration. Reference values (Randall 2011): a sine of amplitude A has RMS A/√2,
    crest factor √2 and kurtosis 1.5; Gaussian noise has kurtosis 3; impulsive bearing faults
    raise crest factor and kurtosis well above these.
    """
    mean = x.mean(axis=-1, keepdims=True)
    d = x - mean
    d2 = d * d
    m2 = d2.mean(axis=-1)
    if np.any(m2 <= 0):
        row = int(np.flatnonzero(np.atleast_1d(m2 <= 0))[0])
        where = f" (row {row})" if x.ndim == 2 else ""
        raise bad_input("x", f"signal is constant{where}: kurtosis and skewness are undefined")
    m3 = (d2 * d).mean(axis=-1)
    m4 = (d2 * d2).mean(axis=-1)
    a = d if remove_mean else x
    rms = np.sqrt(m2) if remove_mean else np.sqrt((x * x).mean(axis=-1))
    peak = np.abs(a).max(axis=-1)
    return {
        "rms": _scalar_or_array(rms),
        "peak": _scalar_or_array(peak),
        "peak_to_peak": _scalar_or_array(x.max(axis=-1) - x.min(axis=-1)),
        "crest_factor": _scalar_or_array(peak / rms),
        "kurtosis": _scalar_or_array(m4 / (m2 * m2)),
        "skewness": _scalar_or_array(m3 / m2**1.5),
    }


# Spectra ----------------------------------------------------------------------------------


def _amplitude_spectrum(
    x: FloatArray, sample_rate: float, window: str
) -> tuple[FloatArray, FloatArray]:
    """Single-sided peak-amplitude spectrum along the last axis, corrected for window gain."""
    import scipy.fft

    n = x.shape[-1]
    a = COSINE_WINDOWS[window]
    raw = scipy.fft.rfft(x, axis=-1)
    m = raw.shape[-1]
    if len(a) == 1:
        spec = raw
    else:
        # Multiplying by cos(2πjk/N) averages the spectrum shifted by ±j bins; bins outside
        # 0..m-1 are mirror images, X[-k] = X[n-k] = conj(X[k]).
        j_max = len(a) - 1
        ext = np.empty((*raw.shape[:-1], m + 2 * j_max), dtype=raw.dtype)
        ext[..., j_max : j_max + m] = raw
        ext[..., :j_max] = np.conj(raw[..., j_max:0:-1])
        top = n - m  # X[m + i] = conj(X[n - m - i])
        ext[..., j_max + m :] = np.conj(raw[..., top - j_max + 1 : top + 1][..., ::-1])
        spec = raw * a[0]
        for j in range(1, len(a)):
            c = (-0.5 if j % 2 else 0.5) * a[j]
            spec += c * (ext[..., j_max - j : j_max - j + m] + ext[..., j_max + j : j_max + j + m])
    amp = np.abs(spec)
    # sum(w) = a0·N is the coherent gain: a bin-centred sine of amplitude A reads A.
    amp *= 2.0 / (a[0] * n)
    amp[..., 0] /= 2.0  # DC has no mirror image to fold in
    if n % 2 == 0:
        amp[..., -1] /= 2.0  # neither has the Nyquist bin
    return scipy.fft.rfftfreq(n, 1.0 / sample_rate), amp


@component(
    "vibration.spectrum",
    "1.0.0",
    Category.MECHANISM,
    title="Windowed FFT amplitude spectrum",
    industries=("general", "discrete", "process", "energy", "power", "mining", "oil_gas"),
    references=(
        HEINZEL_2002 + " (window normalisation, scalloping loss, flat-top windows)",
        "G. D'Antona, A. Ferrero, Digital Signal Processing for Measurement Systems, "
        "Springer, 2006 (flat-top window)",
        "F. J. Harris, On the use of windows for harmonic analysis with the discrete Fourier "
        "transform, Proc. IEEE 66(1), 1978, 51-83",
    ),
    inputs={
        "x": Port.series(
            None, "Vibration signal; one signal per row for a batch", min_length=16, batch=True
        ),
        "sample_rate": Port.number("Hz", "Sampling frequency", exclusive_minimum=0),
        "window": Port.text(
            "Window: hann (general use), flattop (accurate amplitudes), hamming, rectangular",
            enum=WINDOWS,
        ).optional("hann"),
    },
    outputs={
        "frequency": Port.series("Hz", "Frequency of each bin, 0 to sample_rate/2"),
        "amplitude": Port.series(
            None, "Peak amplitude of each bin, in the unit of x; one row per input row"
        ),
    },
)
def spectrum(x: FloatArray, sample_rate: float, window: str) -> dict[str, Any]:
    """Single-sided amplitude spectrum |X(f)|, scaled so a sine of amplitude A reads A.

    The signal is windowed and transformed with a real FFT; each bin is divided by the
    window's coherent gain sum(w)/2 (Heinzel et al. 2002), so a sine centred on a bin reads its
    true amplitude with every window. Half-way between bins the reading drops by the window's
    scalloping loss: 3.92 dB rectangular, 1.42 dB Hann, 1.75 dB Hamming (Heinzel et al. 2002),
    about 0.01 dB for the flat-top window, which is the one to use when amplitudes matter.
    Resolution is sample_rate / len(x). The window is applied as the equivalent convolution of
    the spectrum (every window here is a sum of cosines), which saves building it.
    """
    freq, amp = _amplitude_spectrum(x, sample_rate, window)
    return {"frequency": freq, "amplitude": amp}


@component(
    "vibration.envelope_spectrum",
    "1.0.0",
    Category.MECHANISM,
    title="Envelope spectrum (band-pass, Hilbert envelope, FFT) for bearing diagnostics",
    industries=("general", "discrete", "process", "energy", "power", "mining", "oil_gas"),
    references=(
        RANDALL_ANTONI_2011 + " (envelope analysis)",
        RANDALL_2011 + " (Hilbert transform, analytic signal, demodulation)",
    ),
    inputs={
        "x": Port.series(
            None,
            "Vibration signal, usually acceleration; one signal per row for a batch",
            min_length=16,
            batch=True,
        ),
        "sample_rate": Port.number("Hz", "Sampling frequency", exclusive_minimum=0),
        "band_low": Port.number(
            "Hz", "Lower edge of the demodulation band (none: no high-pass)", exclusive_minimum=0
        ).optional(None),
        "band_high": Port.number(
            "Hz", "Upper edge of the demodulation band (none: no low-pass)", exclusive_minimum=0
        ).optional(None),
        "filter_order": Port.integer(
            "Butterworth order of the band filter (applied forward and backward)",
            minimum=1,
            maximum=10,
        ).optional(4),
        "window": Port.text("Window for the envelope's spectrum", enum=WINDOWS).optional("hann"),
    },
    outputs={
        "frequency": Port.series("Hz", "Frequency of each bin, 0 to sample_rate/2"),
        "amplitude": Port.series(
            None, "Peak amplitude of the envelope at each frequency, in the unit of x"
        ),
    },
)
def envelope_spectrum(
    x: FloatArray,
    sample_rate: float,
    band_low: float | None,
    band_high: float | None,
    filter_order: int,
    window: str,
) -> dict[str, Any]:
    """Spectrum of the signal's envelope: where bearing defect frequencies show up.

    A local bearing fault strikes once per defect period and excites high-frequency
    resonances; the defect frequency is the modulation of those resonances, not a line in the
    raw spectrum (Randall & Antoni 2011). Steps: band-pass around the excited resonance
    (Butterworth, zero-phase ``sosfiltfilt``), envelope |x + j·H[x]| from the analytic signal,
    mean removed, then the amplitude spectrum as in ``vibration.spectrum``. For a carrier of
    amplitude A modulated as A(1 + m·cos 2πf_m t) the envelope spectrum reads A·m at f_m.

    The Hilbert transform is taken with real FFTs of a fast length (zero-padded), so a million
    samples take tens of milliseconds.
    """
    import scipy.fft
    import scipy.signal

    nyquist = sample_rate / 2.0
    for name, edge in (("band_low", band_low), ("band_high", band_high)):
        if edge is not None and edge >= nyquist:
            raise bad_input(name, f"{edge:g} Hz is not below half the sample rate ({nyquist:g} Hz)")
    if band_low is not None and band_high is not None and band_low >= band_high:
        raise bad_input("band_high", f"{band_high:g} Hz is not above band_low ({band_low:g} Hz)")

    n = x.shape[-1]
    if band_low is not None or band_high is not None:
        if band_low is not None and band_high is not None:
            sos = scipy.signal.butter(
                filter_order, [band_low, band_high], "bandpass", fs=sample_rate, output="sos"
            )
        elif band_low is not None:
            sos = scipy.signal.butter(
                filter_order, band_low, "highpass", fs=sample_rate, output="sos"
            )
        else:
            sos = scipy.signal.butter(
                filter_order, band_high, "lowpass", fs=sample_rate, output="sos"
            )
        padlen = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
        if n <= padlen:
            raise bad_input(
                "x", f"needs more than {padlen} samples for an order-{filter_order} filter"
            )
        x = scipy.signal.sosfiltfilt(sos, x, axis=-1)

    # Hilbert transform H[x] via real FFTs: multiply positive frequencies by -j, zero DC and
    # Nyquist; cheaper than a complex inverse FFT of the full analytic spectrum.
    nfft = scipy.fft.next_fast_len(n, real=True)
    spec = scipy.fft.rfft(x, n=nfft, axis=-1)
    spec *= -1j
    spec[..., 0] = 0.0
    if nfft % 2 == 0:
        spec[..., -1] = 0.0
    hx = scipy.fft.irfft(spec, n=nfft, axis=-1, overwrite_x=True)[..., :n]
    del spec
    hx *= hx
    env = x * x
    env += hx
    del hx
    np.sqrt(env, out=env)
    env -= env.mean(axis=-1, keepdims=True)
    freq, amp = _amplitude_spectrum(env, sample_rate, window)
    return {"frequency": freq, "amplitude": amp}


# Bearing defect frequencies -------------------------------------------------------------


@component(
    "vibration.bearing_frequencies",
    "1.0.0",
    Category.MECHANISM,
    title="Rolling-element bearing defect frequencies BPFO, BPFI, BSF, FTF",
    industries=("general", "discrete", "process", "energy", "power", "mining", "oil_gas"),
    references=(
        RANDALL_ANTONI_2011 + " (bearing characteristic frequencies)",
        RANDALL_2011 + " (rolling element bearing frequencies)",
        "Case Western Reserve University Bearing Data Center, bearing information: "
        "SKF 6205-2RS JEM and 6203-2RS JEM defect frequencies",
    ),
    inputs={
        "n_elements": Port.integer("Number of rolling elements", minimum=1),
        "ball_diameter": Port.quantity("mm", "Rolling element diameter d", exclusive_minimum=0),
        "pitch_diameter": Port.quantity("mm", "Pitch circle diameter D", exclusive_minimum=0),
        "contact_angle": Port.quantity(
            "deg",
            "Contact angle φ (0 for a radially loaded deep-groove ball bearing)",
            minimum=0,
            exclusive_maximum=90,
        ).optional(0.0),
        "shaft_speed": Port.quantity(
            "Hz", "Shaft (inner ring) speed relative to the outer ring", minimum=0
        ),
    },
    outputs={
        "bpfo": Port.quantity("Hz", "Ball pass frequency, outer race"),
        "bpfi": Port.quantity("Hz", "Ball pass frequency, inner race"),
        "bsf": Port.quantity(
            "Hz", "Ball (roller) spin frequency; a ball defect strikes both races at 2×BSF"
        ),
        "ftf": Port.quantity("Hz", "Fundamental train (cage) frequency"),
    },
)
def bearing_frequencies(
    n_elements: int,
    ball_diameter: FloatArray,
    pitch_diameter: FloatArray,
    contact_angle: float | FloatArray,
    shaft_speed: FloatArray,
) -> dict[str, Any]:
    """Kinematic defect frequencies of a rolling-element bearing with a stationary outer race.

    With r = (d/D)·cos φ and shaft speed f_r (Randall & Antoni 2011):
    FTF = f_r/2·(1 - r), BPFO = n·FTF, BPFI = n·f_r/2·(1 + r),
    BSF = f_r·D/(2d)·(1 - r²). Real bearings slip, so measured lines sit 1-2 % off these.
    Some tables (e.g. the CWRU bearing data centre's "rolling element" frequency) list 2×BSF,
    the rate at which a ball defect strikes the races. A speed in revolutions per minute can
    be given as {"value": n, "unit": "1/min"}; pint defines "rpm" as 2π rad/min, which it
    converts to rad/s rather than to revolutions per second.
    """
    ratio = ball_diameter / pitch_diameter
    if np.any(ratio >= 1):
        raise bad_input("ball_diameter", "must be smaller than the pitch diameter")
    r = ratio * np.cos(np.deg2rad(contact_angle))
    ftf = shaft_speed / 2.0 * (1.0 - r)
    return {
        "bpfo": _scalar_or_array(n_elements * ftf),
        "bpfi": _scalar_or_array(n_elements * shaft_speed / 2.0 * (1.0 + r)),
        "bsf": _scalar_or_array(shaft_speed / (2.0 * ratio) * (1.0 - r * r)),
        "ftf": _scalar_or_array(ftf),
    }


# ISO 10816 severity zones ---------------------------------------------------------------

# Zone boundaries A/B, B/C, C/D in mm/s r.m.s. velocity.
# ISO 10816-1:1995, Annex B, Table B.1 (typical boundaries by machine class):
#   class I   small machines (up to 15 kW)
#   class II  medium machines (15-75 kW, or up to 300 kW on special foundations)
#   class III large machines on rigid, heavy foundations
#   class IV  large machines on relatively soft foundations
# ISO 10816-3:2009, Annex A, Table A.1 (group 1: 300 kW-50 MW) and Table A.2
# (group 2: 15-300 kW), each for rigid and flexible support.
ISO10816_BOUNDARIES: dict[str, tuple[float, float, float]] = {
    "I": (0.71, 1.8, 4.5),
    "II": (1.12, 2.8, 7.1),
    "III": (1.8, 4.5, 11.2),
    "IV": (2.8, 7.1, 18.0),
    "group1_rigid": (2.3, 4.5, 7.1),
    "group1_flexible": (3.5, 7.1, 11.0),
    "group2_rigid": (1.4, 2.8, 4.5),
    "group2_flexible": (2.3, 4.5, 7.1),
}
ZONES = ("A", "B", "C", "D")


@component(
    "vibration.iso10816_zone",
    "1.0.0",
    Category.MECHANISM,
    title="ISO 10816 vibration severity zone A/B/C/D from velocity RMS",
    industries=("general", "discrete", "process", "energy", "power", "mining", "oil_gas"),
    references=(
        "ISO 10816-1:1995, Mechanical vibration - Evaluation of machine vibration by "
        "measurements on non-rotating parts - Part 1: General guidelines, Annex B, Table B.1",
        "ISO 10816-3:2009, Part 3: Industrial machines with nominal power above 15 kW and "
        "nominal speeds between 120 r/min and 15 000 r/min, Annex A, Tables A.1 and A.2",
    ),
    inputs={
        "velocity_rms": Port.quantity(
            "mm/s", "Broad-band r.m.s. vibration velocity on the bearing housing", minimum=0
        ),
        "machine_class": Port.text(
            "ISO 10816-1 class I-IV, or ISO 10816-3 group 1 (300 kW-50 MW) / group 2 "
            "(15-300 kW) on a rigid or flexible support",
            enum=tuple(ISO10816_BOUNDARIES),
        ),
    },
    outputs={
        "zone": Port.text(
            "A: newly commissioned; B: unrestricted long-term operation; C: restricted "
            "operation; D: severe enough to cause damage (a list for array input)",
            enum=ZONES,
        ),
        "zone_index": Port.quantity(None, "Zone as a number: 0 = A, 1 = B, 2 = C, 3 = D"),
        "boundaries": Port.object(
            "Zone boundaries used, mm/s r.m.s.",
            schema={"type": "object", "additionalProperties": {"type": "number"}},
        ),
    },
)
def iso10816_zone(velocity_rms: FloatArray, machine_class: str) -> dict[str, Any]:
    """Evaluation zone of ISO 10816-1 / 10816-3 for a broad-band velocity r.m.s. reading.

    A value on a boundary belongs to the lower zone (the standards give the boundaries as the
    upper limits of zones A, B and C). The boundaries are the standards' typical values: a
    machine's own acceptance limits, agreed between supplier and user, take precedence.
    """
    bounds = ISO10816_BOUNDARIES[machine_class]
    idx = np.searchsorted(np.asarray(bounds), velocity_rms, side="left")
    names = np.asarray(ZONES)[idx]
    return {
        "zone": str(names) if names.ndim == 0 else names.tolist(),
        "zone_index": int(idx) if idx.ndim == 0 else idx.astype(np.float64),
        "boundaries": dict(zip(("A/B", "B/C", "C/D"), bounds, strict=True)),
    }
