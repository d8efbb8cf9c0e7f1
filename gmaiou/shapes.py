"""Rasterised shapes whose boxes are poor proxies of their masks.

Used by the synthetic dataset, the tests (random irregular masks) and the
benchmarks. Every function returns a ``[H, W]`` bool NumPy array in pixel
coordinates where pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)``; a pixel is in
the shape when its centre ``(c + 0.5, r + 0.5)`` is.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "SHAPE_KINDS",
    "capsule",
    "crescent",
    "ellipse",
    "l_shape",
    "random_shape",
    "ring",
    "rotated_rect",
    "stick_figure",
    "tight_box",
    "u_shape",
    "blob",
]


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    ys = np.arange(h, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(w, dtype=np.float64)[None, :] + 0.5
    return xs, ys


def _rotate(
    xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in the frame of a shape centred at (cx, cy) and turned by ``angle`` radians."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xs - cx, ys - cy
    return dx * c + dy * s, -dx * s + dy * c


def rotated_rect(
    shape: tuple[int, int], cx: float, cy: float, length: float, width: float, angle: float = 0.0
) -> np.ndarray:
    """A rectangle of ``length x width`` centred at (cx, cy), turned by ``angle``; thin ones are bars."""
    xs, ys = _grid(shape)
    u, v = _rotate(xs, ys, cx, cy, angle)
    return (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)


def ellipse(
    shape: tuple[int, int], cx: float, cy: float, ax: float, ay: float, angle: float = 0.0
) -> np.ndarray:
    """A filled ellipse with semi-axes ``ax``, ``ay``."""
    xs, ys = _grid(shape)
    u, v = _rotate(xs, ys, cx, cy, angle)
    return (u / max(ax, 1e-6)) ** 2 + (v / max(ay, 1e-6)) ** 2 <= 1.0


def ring(shape: tuple[int, int], cx: float, cy: float, r_out: float, r_in: float) -> np.ndarray:
    """An annulus: the box is mostly the hole."""
    xs, ys = _grid(shape)
    d2 = (xs - cx) ** 2 + (ys - cy) ** 2
    return (d2 <= r_out**2) & (d2 >= r_in**2)


def crescent(
    shape: tuple[int, int], cx: float, cy: float, r: float, shift: float, angle: float = 0.0
) -> np.ndarray:
    """A disk minus a shifted disk of the same radius."""
    xs, ys = _grid(shape)
    ox, oy = cx + shift * math.cos(angle), cy + shift * math.sin(angle)
    inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= r**2
    bite = (xs - ox) ** 2 + (ys - oy) ** 2 <= r**2
    return inside & ~bite


def capsule(
    shape: tuple[int, int], x0: float, y0: float, x1: float, y1: float, radius: float
) -> np.ndarray:
    """Points within ``radius`` of the segment (x0, y0)-(x1, y1): a thick line with round ends."""
    xs, ys = _grid(shape)
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    px, py = x0 + t * dx, y0 + t * dy
    return (xs - px) ** 2 + (ys - py) ** 2 <= radius**2


def l_shape(
    shape: tuple[int, int], x: float, y: float, size: float, thickness: float, angle: float = 0.0
) -> np.ndarray:
    """An L of arm length ``size``: a vertical and a horizontal bar meeting at a corner."""
    c, s = math.cos(angle), math.sin(angle)

    def at(u: float, v: float) -> tuple[float, float]:
        return x + u * c - v * s, y + u * s + v * c

    vx, vy = at(thickness / 2, size / 2)
    hx, hy = at(size / 2, size - thickness / 2)
    return rotated_rect(shape, vx, vy, size, thickness, angle + math.pi / 2) | rotated_rect(
        shape, hx, hy, size, thickness, angle
    )


def u_shape(
    shape: tuple[int, int], x: float, y: float, size: float, thickness: float, angle: float = 0.0
) -> np.ndarray:
    """A U: two vertical arms joined by a bottom bar."""
    c, s = math.cos(angle), math.sin(angle)

    def at(u: float, v: float) -> tuple[float, float]:
        return x + u * c - v * s, y + u * s + v * c

    left = rotated_rect(shape, *at(thickness / 2, size / 2), size, thickness, angle + math.pi / 2)
    right = rotated_rect(
        shape, *at(size - thickness / 2, size / 2), size, thickness, angle + math.pi / 2
    )
    bottom = rotated_rect(shape, *at(size / 2, size - thickness / 2), size, thickness, angle)
    return left | right | bottom


def stick_figure(
    shape: tuple[int, int], cx: float, cy: float, height: float, rng: np.random.Generator
) -> np.ndarray:
    """An articulated figure: head, torso, and two arms and two legs at random joint angles."""
    unit = height / 6.0
    limb = max(unit * 0.35, 1.0)
    head_y = cy - 2.4 * unit
    neck_y, hip_y = cy - 1.6 * unit, cy + 0.6 * unit
    mask = ellipse(shape, cx, head_y, 0.7 * unit, 0.8 * unit)
    mask |= capsule(shape, cx, neck_y, cx, hip_y, limb * 1.3)
    for side in (-1, 1):
        a1 = math.pi / 2 + side * rng.uniform(0.3, 1.6)
        ex, ey = cx + 1.3 * unit * math.cos(a1), neck_y + 0.3 * unit + 1.3 * unit * math.sin(a1)
        a2 = a1 + side * rng.uniform(-1.2, 1.2)
        hx, hy = ex + 1.2 * unit * math.cos(a2), ey + 1.2 * unit * math.sin(a2)
        mask |= capsule(shape, cx, neck_y + 0.3 * unit, ex, ey, limb) | capsule(
            shape, ex, ey, hx, hy, limb
        )
        l1 = math.pi / 2 + side * rng.uniform(0.1, 0.9)
        kx, ky = cx + 1.5 * unit * math.cos(l1), hip_y + 1.5 * unit * math.sin(l1)
        l2 = l1 + side * rng.uniform(-0.8, 0.8)
        fx, fy = kx + 1.5 * unit * math.cos(l2), ky + 1.5 * unit * math.sin(l2)
        mask |= capsule(shape, cx, hip_y, kx, ky, limb * 1.1) | capsule(shape, kx, ky, fx, fy, limb)
    return mask


def blob(
    shape: tuple[int, int], cx: float, cy: float, radius: float, rng: np.random.Generator
) -> np.ndarray:
    """A compact blob: a union of a few overlapping ellipses around (cx, cy)."""
    mask = ellipse(shape, cx, cy, radius, radius * rng.uniform(0.6, 1.0), rng.uniform(0, math.pi))
    for _ in range(int(rng.integers(2, 5))):
        a = rng.uniform(0, 2 * math.pi)
        d = radius * rng.uniform(0.2, 0.6)
        r = radius * rng.uniform(0.4, 0.8)
        mask |= ellipse(
            shape, cx + d * math.cos(a), cy + d * math.sin(a), r, r * rng.uniform(0.6, 1.0), a
        )
    return mask


def _random_bar(shape, cx, cy, size, rng):
    return rotated_rect(
        shape, cx, cy, size, max(size * rng.uniform(0.06, 0.15), 1.5), rng.uniform(0.25, 1.3)
    )


def _random_ring(shape, cx, cy, size, rng):
    return ring(shape, cx, cy, size / 2, size / 2 * rng.uniform(0.55, 0.85))


def _random_l(shape, cx, cy, size, rng):
    return l_shape(
        shape, cx - size / 2, cy - size / 2, size, max(size * rng.uniform(0.12, 0.25), 1.5)
    )


def _random_u(shape, cx, cy, size, rng):
    return u_shape(
        shape, cx - size / 2, cy - size / 2, size, max(size * rng.uniform(0.12, 0.22), 1.5)
    )


def _random_crescent(shape, cx, cy, size, rng):
    return crescent(
        shape, cx, cy, size / 2, size / 2 * rng.uniform(0.4, 0.8), rng.uniform(0, 2 * math.pi)
    )


def _random_stick(shape, cx, cy, size, rng):
    return stick_figure(shape, cx, cy, size, rng)


def _random_blob(shape, cx, cy, size, rng):
    return blob(shape, cx, cy, size / 3, rng)


def _random_rect(shape, cx, cy, size, rng):
    return rotated_rect(shape, cx, cy, size, size * rng.uniform(0.5, 1.0), 0.0)


#: Shape kinds and their random generators ``f(shape, cx, cy, size, rng) -> mask``.
SHAPE_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "bar": _random_bar,
    "ring": _random_ring,
    "l_shape": _random_l,
    "u_shape": _random_u,
    "crescent": _random_crescent,
    "stick_figure": _random_stick,
    "blob": _random_blob,
    "rectangle": _random_rect,
}


def random_shape(
    shape: tuple[int, int],
    rng: np.random.Generator,
    kind: str | None = None,
    size: float | None = None,
    centre: tuple[float, float] | None = None,
) -> np.ndarray:
    """One random shape of ``kind`` (random if ``None``) and ``size`` pixels across.

    The centre may fall near a border, so shapes can be cut by the image edge.
    """
    if kind is None:
        kind = str(rng.choice(list(SHAPE_KINDS)))
    if kind not in SHAPE_KINDS:
        raise ValueError(f"unknown shape kind {kind!r}; choose one of {sorted(SHAPE_KINDS)}")
    h, w = shape
    if size is None:
        size = float(rng.uniform(0.08, 0.6) * min(h, w))
    if centre is None:
        centre = (float(rng.uniform(0, w)), float(rng.uniform(0, h)))
    return SHAPE_KINDS[kind](shape, centre[0], centre[1], size, rng)


def tight_box(mask: np.ndarray) -> np.ndarray:
    """The tight ``(x1, y1, x2, y2)`` box of a non-empty ``[H, W]`` mask, in pixel-edge coordinates."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("tight_box of an empty mask is undefined")
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)
