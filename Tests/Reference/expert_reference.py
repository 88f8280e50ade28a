#!/usr/bin/env python3
"""Independent NumPy reference of the built-in experts, written from their definitions
(the comments at the top of Sources/VidxExperts/AudioLogMel.swift and FrameMotion.swift).

    expert_reference.py audio SAMPLES.npy FEATURES.npy TIMES.npy
    expert_reference.py motion FEATURES.npy TIMES.npy FRAMES.npy FRAME_TIMES.npy [FRAMES.npy FRAME_TIMES.npy ...]

audio (`builtin:audio/logmel64-stats@1`): SAMPLES.npy is a 1-D float array of 16 kHz mono
samples; writes FEATURES (rows, 128) float32 (64 log-mel band means, then 64 population
standard deviations per 0.96 s window) and TIMES (rows, 2) float32.

motion (`builtin:motion/framediff-8x8@1`): each FRAMES.npy is a uint8 array (n, H, W, 3) of
RGB frames and FRAME_TIMES.npy its (n,) presentation times in seconds; the pairs of files are
consecutive segments of one stream (a segment may have a different frame size: that is how
size changes mid-stream are tested). Writes FEATURES (rows, 64) float32 and TIMES (rows, 2).

Everything is computed in float64 with NumPy's own FFT (np.fft.rfft), not the Swift code's
algorithm; nothing here comes from the Swift implementation.
"""

from __future__ import annotations

import math
import sys

import numpy as np

__all__ = ["mel_filterbank", "logmel_frames", "audio_expert", "motion_expert", "main"]

SAMPLE_RATE = 16000
FRAME = 400  # 25 ms
HOP = 160  # 10 ms
NFFT = 512
BANDS = 64
WINDOW_FRAMES = 96  # 0.96 s
MIN_FRAMES = 48  # a last, partial window needs at least half a window
FLOOR = 1e-6
GRID = 8


def hz_to_mel(f):
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank() -> np.ndarray:
    """(64, 257) triangular HTK-mel filters over 0..8000 Hz, peak 1, no area normalisation."""
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(SAMPLE_RATE / 2), BANDS + 2))
    freqs = np.arange(NFFT // 2 + 1) * SAMPLE_RATE / NFFT
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def logmel_frames(samples: np.ndarray) -> np.ndarray:
    """(frames, 64) ln(mel power + 1e-6) of the full 25 ms frames, hop 10 ms."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    count = 0 if len(x) < FRAME else (len(x) - FRAME) // HOP + 1
    if count == 0:
        return np.zeros((0, BANDS))
    index = np.arange(count)[:, None] * HOP + np.arange(FRAME)[None, :]
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(FRAME) / FRAME)  # periodic
    spectrum = np.fft.rfft(x[index] * hann, n=NFFT, axis=1)  # zero-padded to 512
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return np.log(power @ mel_filterbank().T + FLOOR)


def audio_expert(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features (rows, 128), times (rows, 2)) of `builtin:audio/logmel64-stats@1`."""
    logmel = logmel_frames(samples)
    duration = len(samples) / SAMPLE_RATE
    features, times = [], []
    for k in range(math.ceil(len(logmel) / WINDOW_FRAMES)):
        window = logmel[k * WINDOW_FRAMES:(k + 1) * WINDOW_FRAMES]
        if len(window) < MIN_FRAMES:
            break
        features.append(np.concatenate([window.mean(axis=0), window.std(axis=0)]))  # std: population
        times.append([k * 0.96, min((k + 1) * 0.96, duration)])
    return (np.asarray(features, dtype=np.float32).reshape(-1, 2 * BANDS),
            np.asarray(times, dtype=np.float32).reshape(-1, 2))


def cell_means(values: np.ndarray) -> np.ndarray:
    """(64,) means of an (H, W) array over the 8 x 8 grid, cell bounds floor(i * size / 8)."""
    h, w = values.shape
    rows = [i * h // GRID for i in range(GRID + 1)]
    cols = [j * w // GRID for j in range(GRID + 1)]
    out = np.zeros(GRID * GRID)
    for i in range(GRID):
        for j in range(GRID):
            cell = values[rows[i]:rows[i + 1], cols[j]:cols[j + 1]]
            out[i * GRID + j] = cell.mean() if cell.size else 0.0
    return out


def motion_expert(frames, times) -> tuple[np.ndarray, np.ndarray]:
    """(features (rows, 64), times (rows, 2)) of `builtin:motion/framediff-8x8@1` over a
    sequence of (H, W, 3) uint8 frames (sizes may vary) and their times."""
    windows: dict[int, list[np.ndarray]] = {}
    previous, last_time = None, None
    for frame, t in zip(frames, times):
        t = float(t)
        if last_time is not None and t < last_time:
            continue  # earlier than the last accepted frame: ignored
        last_time = t
        rgb = np.asarray(frame, dtype=np.float64)
        gray = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
        if previous is not None and previous.shape == gray.shape:
            windows.setdefault(math.floor(t), []).append(cell_means(np.abs(gray - previous)))
        previous = gray
    keys = sorted(windows)
    features = [np.mean(windows[k], axis=0) for k in keys]
    return (np.asarray(features, dtype=np.float32).reshape(-1, GRID * GRID),
            np.asarray([[k, k + 1] for k in keys], dtype=np.float32).reshape(-1, 2))


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "audio":
        features, times = audio_expert(np.load(argv[1]))
        np.save(argv[2], features)
        np.save(argv[3], times)
        return 0
    if len(argv) >= 5 and argv[0] == "motion" and len(argv) % 2 == 1:
        frames, frame_times = [], []
        for i in range(3, len(argv), 2):
            segment, segment_times = np.load(argv[i]), np.load(argv[i + 1])
            if segment.ndim != 4 or segment.shape[3] != 3 or segment.dtype != np.uint8 or len(segment_times) != len(segment):
                print(f"{argv[i]}: expected uint8 (n, H, W, 3) frames and n times", file=sys.stderr)
                return 2
            frames.extend(segment)
            frame_times.extend(segment_times)
        features, times = motion_expert(frames, frame_times)
        np.save(argv[1], features)
        np.save(argv[2], times)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
