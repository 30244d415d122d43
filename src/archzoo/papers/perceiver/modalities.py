"""Generated data for the multi-modality claim: audio-like series (1D) and point clouds of 3D shapes.

The Perceiver paper learns ImageNet images, AudioSet audio and ModelNet40 point clouds with one architecture
(Sec. 4); these are small stand-ins we generate, so that the claim needs no download. Both return a
`TensorDataset(x float32, y int64)`; the classes are balanced and the random draws fixed by `seed`.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import TensorDataset

SERIES_CLASSES = ("low tone", "high tone", "two tones", "up-chirp", "down-chirp", "tremolo")
SHAPES = ("sphere", "cube", "torus", "cylinder", "cone")


def series(n: int, length: int = 256, noise: float = 0.3, seed: int = 0) -> TensorDataset:
    """`n` series (n, 1, length) of six classes (`SERIES_CLASSES`): sinusoids, chirps and amplitude modulation with
    random frequency (in cycles per series), phase and amplitude, plus Gaussian noise of std `noise`."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % len(SERIES_CLASSES)
    t = torch.linspace(0, 1, length).expand(n, -1)                                   # (n, T), seconds
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, 1, generator=g)             # noqa: E731
    f, phase, amp = u(4, 12), u(0, 2 * math.pi), u(0.5, 1.5)
    tone = lambda freq: torch.sin(2 * math.pi * freq * t + phase)                    # noqa: E731
    chirp = lambda f0, f1: torch.sin(2 * math.pi * (f0 * t + (f1 - f0) * t ** 2 / 2) + phase)   # noqa: E731
    signals = torch.stack((
        tone(f),                                                                     # low tone: 4-12 cycles
        tone(3 * f),                                                                 # high tone: 12-36 cycles
        (tone(f) + tone(2.5 * f)) / 2,                                               # two tones
        chirp(f, 4 * f),                                                             # up-chirp
        chirp(4 * f, f),                                                             # down-chirp
        tone(3 * f) * (0.6 + 0.4 * torch.sin(2 * math.pi * u(1, 3) * t)),            # tremolo: modulated high tone
    ))                                                                               # (classes, n, T)
    x = amp * signals[y, torch.arange(n)] + noise * torch.randn(n, length, generator=g)
    return TensorDataset(x.unsqueeze(1).float(), y)                                  # (n, 1, T)


def _surface(shape: str, m: int, g: torch.Generator) -> torch.Tensor:
    """`m` points (m, 3) sampled on the surface of a unit-size `shape`."""
    r = lambda *s: torch.rand(*s, generator=g)                                       # noqa: E731
    if shape == "sphere":
        p = torch.randn(m, 3, generator=g)
        return p / p.norm(dim=1, keepdim=True)
    if shape == "cube":                                                              # a random face, a random point
        p = 2 * r(m, 3) - 1
        axis, sign = torch.randint(0, 3, (m,), generator=g), torch.randint(0, 2, (m,), generator=g) * 2 - 1
        p[torch.arange(m), axis] = sign.float()
        return p * 0.8
    theta, v = 2 * math.pi * r(m), r(m)
    if shape == "torus":                                                             # major radius 0.7, minor 0.3
        phi = 2 * math.pi * r(m)
        return torch.stack(((0.7 + 0.3 * phi.cos()) * theta.cos(), (0.7 + 0.3 * phi.cos()) * theta.sin(),
                            0.3 * phi.sin()), dim=1)
    if shape == "cylinder":                                                          # radius 0.6, height 1.6
        return torch.stack((0.6 * theta.cos(), 0.6 * theta.sin(), 1.6 * v - 0.8), dim=1)
    if shape == "cone":                                                              # apex at z = 0.8
        rad = 0.8 * v.sqrt()                                                         # uniform on the lateral surface
        return torch.stack((rad * theta.cos(), rad * theta.sin(), 0.8 - 2 * rad), dim=1)
    raise ValueError(f"unknown shape {shape!r}; shapes are {SHAPES}")


def _random_rotation(g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def point_clouds(n: int, points: int = 128, noise: float = 0.02, seed: int = 0) -> TensorDataset:
    """`n` clouds (n, points, 3) of the five `SHAPES`, each randomly rotated, scaled by 0.7-1.1 and jittered."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % len(SHAPES)
    clouds = []
    for label in y.tolist():
        p = _surface(SHAPES[label], points, g) @ _random_rotation(g).T
        scale = 0.7 + 0.4 * torch.rand(1, generator=g)
        clouds.append(scale * p + noise * torch.randn(points, 3, generator=g))
    return TensorDataset(torch.stack(clouds).clamp(-1, 1).float(), y)                # (n, points, 3) in [-1, 1]
