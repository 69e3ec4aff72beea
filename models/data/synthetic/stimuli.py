"""Stimulus videos at 36 x 64, grey levels 0..255, time-major (T, H, W) float32.

Natural-movie stand-ins (1/f textures panned by a moving camera, object-like patches moving over them, scene
cuts) and the five out-of-distribution families of SENSORIUM.md. Every function is deterministic given its rng.
"""

from __future__ import annotations

import numpy as np

from models.benchmark import DOTS_FRAMES, FRAME_HEIGHT, FRAME_WIDTH, MOVIE_FRAMES

H, W = FRAME_HEIGHT, FRAME_WIDTH
GREY = 80.0  # mean grey level of the real videos (meta statistics: ~80 of 255)
CONTRAST = 55.0  # pixel std of the real videos: ~57


def pink_texture(rng: np.random.Generator, h: int, w: int, exponent: float = 1.0) -> np.ndarray:
    """Zero-mean, unit-std texture with amplitude spectrum 1/f**exponent."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy**2 + fx**2)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f**exponent
    spectrum[0, 0] = 0.0
    tex = np.fft.irfft2(spectrum, s=(h, w))
    return (tex / (tex.std() + 1e-8)).astype(np.float32)


def _smooth_path(rng: np.random.Generator, t: int, speed: float, smooth: int = 30) -> np.ndarray:
    """(t, 2) smooth random trajectory: velocity is low-pass filtered noise, mean |v| ~ speed px/frame."""
    v = rng.standard_normal((t + smooth, 2))
    kernel = np.hanning(smooth)
    kernel /= kernel.sum()
    v = np.stack([np.convolve(v[:, k], kernel, mode="valid")[:t] for k in range(2)], axis=1)
    v *= speed / (np.abs(v).mean() + 1e-8)
    return np.cumsum(v, axis=0)


def _shift_crop(tiled: np.ndarray, y: float, x: float, h: int, w: int) -> np.ndarray:
    """(h, w) window of a periodic texture at fractional offset (y, x): 4 crops, scalar bilinear weights."""
    th, tw = tiled.shape[0] // 2, tiled.shape[1] // 2
    iy, ix = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - iy, x - ix
    iy, ix = iy % th, ix % tw
    c = tiled[iy : iy + h + 1, ix : ix + w + 1]
    return (
        c[:-1, :-1] * ((1 - fy) * (1 - fx))
        + c[:-1, 1:] * ((1 - fy) * fx)
        + c[1:, :-1] * (fy * (1 - fx))
        + c[1:, 1:] * (fy * fx)
    )


def _tile(tex: np.ndarray) -> np.ndarray:
    return np.tile(tex, (2, 2))


def _pan(tex: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Frames (len(path), H, W) of a periodic texture seen through a window moving along `path` (y, x)."""
    tiled = _tile(tex)
    return np.stack([_shift_crop(tiled, y, x, H, W) for y, x in path]).astype(np.float32)


def _to_grey(x: np.ndarray, contrast: float = CONTRAST, grey: float = GREY) -> np.ndarray:
    return np.clip(grey + contrast * x, 0.0, 255.0).astype(np.float32)


YY, XX = np.mgrid[0:H, 0:W].astype(np.float32)


def _paste_objects(rng: np.random.Generator, frames: np.ndarray, n_objects: int, moving: bool = True) -> None:
    """Blend textured, soft-edged elliptical objects that move along smooth paths into `frames` (in place)."""
    n = frames.shape[0]
    for _ in range(n_objects):
        ry, rx = rng.uniform(4, 10, size=2)
        size = int(2 * max(ry, rx) + 4)
        sy, sx = np.mgrid[0:size, 0:size].astype(np.float32) - size / 2
        mask = 1.0 / (1.0 + np.exp(np.clip(4.0 * ((sy / ry) ** 2 + (sx / rx) ** 2 - 1.0), -30, 30)))
        sprite = pink_texture(rng, size, size, exponent=1.5) * 0.6 + rng.uniform(-1.2, 1.2)
        start = rng.uniform([-size / 2, -size / 2], [H - size / 2, W - size / 2])
        path = start + (_smooth_path(rng, n, speed=rng.uniform(0.2, 1.2)) if moving else np.zeros((n, 2)))
        for f in range(n):
            y0, x0 = int(np.rint(path[f, 0])), int(np.rint(path[f, 1]))
            ya, yb, xa, xb = max(y0, 0), min(y0 + size, H), max(x0, 0), min(x0 + size, W)
            if ya >= yb or xa >= xb:
                continue
            m = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
            region = frames[f, ya:yb, xa:xb]
            frames[f, ya:yb, xa:xb] = region * (1 - m) + sprite[ya - y0 : yb - y0, xa - x0 : xb - x0] * m


def _still_image(rng: np.random.Generator) -> np.ndarray:
    frame = pink_texture(rng, H, W, exponent=rng.uniform(0.9, 1.3))[None]
    _paste_objects(rng, frame, int(rng.integers(0, 3)), moving=False)
    return _to_grey(frame[0], contrast=CONTRAST * rng.uniform(0.7, 1.3))


def natural_movie(rng: np.random.Generator, t: int = MOVIE_FRAMES) -> np.ndarray:
    """Panned 1/f scenes with 0-2 cuts, moving textured objects, slow luminance drift."""
    n_scenes = int(rng.integers(1, 4)) if t > 100 else 1
    cuts = (
        np.sort(rng.choice(np.arange(40, t - 40), size=n_scenes - 1, replace=False)) if n_scenes > 1 else []
    )
    bounds = [0, *[int(c) for c in cuts], t]
    out = np.empty((t, H, W), dtype=np.float32)
    for s in range(n_scenes):
        a, b = bounds[s], bounds[s + 1]
        n = b - a
        tex = pink_texture(rng, 2 * H, 2 * W, exponent=rng.uniform(0.9, 1.3))
        frames = _pan(tex, _smooth_path(rng, n, speed=rng.uniform(0.05, 0.8)) + rng.uniform(0, 2 * H))
        _paste_objects(rng, frames, int(rng.integers(0, 4)))
        contrast = CONTRAST * rng.uniform(0.7, 1.3)
        grey = GREY * rng.uniform(0.7, 1.2) + np.linspace(0, rng.normal(0, 10), n)[:, None, None]
        out[a:b] = np.clip(grey + contrast * frames, 0, 255)
    return out


def directional_pink_noise(rng: np.random.Generator, t: int = MOVIE_FRAMES) -> np.ndarray:
    """Pink noise drifting in one direction per 60-frame block (direction ~ the stimulus)."""
    tex = pink_texture(rng, 2 * H, 2 * W, exponent=1.2)
    paths = []
    pos = np.zeros(2)
    for a in range(0, t, 60):
        theta = rng.integers(8) * np.pi / 4
        n = min(60, t - a)
        path = pos + np.array([np.sin(theta), np.cos(theta)]) * np.arange(1, n + 1)[:, None]
        pos = path[-1]
        paths.append(path)
    return _to_grey(_pan(tex, np.concatenate(paths)))


def gaussian_dots(rng: np.random.Generator, t: int = DOTS_FRAMES) -> np.ndarray:
    """One black or white Gaussian dot (radius ~5 px) on grey, jumping every 9-10 frames."""
    out = np.full((t, H, W), GREY, dtype=np.float32)
    a = 0
    while a < t:
        n = int(rng.integers(9, 11))
        cy, cx = rng.uniform(3, H - 3), rng.uniform(3, W - 3)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        blob = np.exp(-((YY - cy) ** 2 + (XX - cx) ** 2) / (2 * 3.0**2))
        out[a : a + n] = np.clip(GREY + sign * blob * (255 - GREY if sign > 0 else GREY), 0, 255)
        a += n
    return out


def random_dot_kinematogram(rng: np.random.Generator, t: int = MOVIE_FRAMES, n_dots: int = 60) -> np.ndarray:
    """Dots moving coherently in one of 8 directions (70% coherence) on grey; direction changes every 75 frames."""
    pos = rng.uniform([0, 0], [H, W], size=(n_dots, 2))
    polarity = np.where(rng.random(n_dots) < 0.5, 255.0, 0.0).astype(np.float32)
    out = np.full((t, H, W), GREY, dtype=np.float32)
    theta = rng.integers(8) * np.pi / 4
    coherent = rng.random(n_dots) < 0.7
    for f in range(t):
        if f % 75 == 0 and f:
            theta = rng.integers(8) * np.pi / 4
        step = np.where(coherent[:, None], [np.sin(theta), np.cos(theta)], rng.standard_normal((n_dots, 2)))
        pos = (pos + 1.2 * step) % [H, W]
        iy, ix = pos[:, 0].astype(np.int64), pos[:, 1].astype(np.int64)
        for dy in (0, 1):
            for dx in (0, 1):
                out[f, (iy + dy) % H, (ix + dx) % W] = polarity
    return out


def drifting_gabors(rng: np.random.Generator, t: int = MOVIE_FRAMES) -> np.ndarray:
    """25-frame blocks, each a Gabor patch drifting in one of 8 directions (12 blocks per 300 frames)."""
    out = np.empty((t, H, W), dtype=np.float32)
    for a in range(0, t, 25):
        n = min(25, t - a)
        theta = rng.integers(8) * np.pi / 4
        sf = rng.choice([1 / 16, 1 / 10])
        cy, cx = rng.uniform(8, H - 8), rng.uniform(12, W - 12)
        sigma = rng.uniform(6, 10)
        u = (XX - cx) * np.cos(theta) + (YY - cy) * np.sin(theta)
        env = np.exp(-((XX - cx) ** 2 + (YY - cy) ** 2) / (2 * sigma**2))
        phase = 2 * np.pi * 2.0 / 30 * np.arange(n)  # 2 Hz temporal frequency
        out[a : a + n] = np.sin(2 * np.pi * sf * u[None] - phase[:, None, None]) * env[None] * 1.4
    return _to_grey(out)


def flashing_images(rng: np.random.Generator, t: int = MOVIE_FRAMES) -> np.ndarray:
    """Natural-like still images for 15-17 frames, then grey for 15-17 frames."""
    out = np.full((t, H, W), GREY, dtype=np.float32)
    a = 0
    while a < t:
        n_on, n_off = int(rng.integers(15, 18)), int(rng.integers(15, 18))
        out[a : a + n_on] = _still_image(rng)
        a += n_on + n_off
    return out


# Generators by stimulus family id (models.benchmark.STIMULUS_FAMILIES) and their trial lengths.
FAMILY_GENERATORS = {
    0: natural_movie,
    1: directional_pink_noise,
    2: gaussian_dots,
    3: random_dot_kinematogram,
    4: drifting_gabors,
    5: flashing_images,
}
FAMILY_FRAMES = {
    0: MOVIE_FRAMES,
    1: MOVIE_FRAMES,
    2: DOTS_FRAMES,
    3: MOVIE_FRAMES,
    4: MOVIE_FRAMES,
    5: MOVIE_FRAMES,
}


def make_stimulus(family: int, seed: tuple[int, ...]) -> np.ndarray:
    """Video (T, H, W) of family `family`, deterministic from `seed`."""
    rng = np.random.default_rng(list(seed))
    return FAMILY_GENERATORS[family](rng, FAMILY_FRAMES[family])
