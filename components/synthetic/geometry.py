"""Canonical-frame geometry of the synthetic faces: curve primitives and the face's anchor points.

Every shape is built in one canonical 178x218 face frame (eyes near CelebA's aligned positions,
y pointing down, coordinates are pixel indices); canvas.py maps it to the image through one
per-image similarity transform.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from components.synthetic.people import Identity, ImageParams

CX = 88.5  # canonical face mid-line


# Small cached bases: the drawing makes thousands of tiny curves, so numpy call overhead matters.
@functools.lru_cache(maxsize=None)
def _bezier_basis(n):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return np.hstack([(1 - t) ** 2, 2 * (1 - t) * t, t**2])


@functools.lru_cache(maxsize=None)
def _unit_circle(n, a0, a1):
    a = np.linspace(a0, a1, n, endpoint=abs(a1 - a0 - 2 * math.pi) > 1e-9)
    return np.stack([np.cos(a), np.sin(a)], 1)


def bezier(p0, c, p2, n=14):
    """Quadratic Bezier from p0 to p2 with control point c, n samples."""
    return _bezier_basis(n) @ np.array([p0, c, p2], float)


def ellipse(cx, cy, rx, ry, n=28, a0=0.0, a1=2 * math.pi):
    return _unit_circle(n, a0, a1) * (rx, ry) + (cx, cy)


def outer_arc(side):
    """Angle range of the half ellipse that bulges away from the mid-line on `side` (-1 / +1)."""
    return (-math.pi / 2, math.pi / 2) if side > 0 else (math.pi / 2, 3 * math.pi / 2)


def stroke(pts, w0, w1=None, closed=False):
    """Polygon of a polyline with width tapering linearly from w0 to w1."""
    pts = np.asarray(pts, float)
    if closed:
        pts = np.vstack([pts, pts[:1]])
    d = np.empty_like(pts)  # central differences (one-sided at the ends)
    d[1:-1] = pts[2:] - pts[:-2]
    d[0], d[-1] = pts[1] - pts[0], pts[-1] - pts[-2]
    nrm = d[:, ::-1] * (-1.0, 1.0) / (np.sqrt((d * d).sum(1))[:, None] + 1e-9)
    w = (w0 if w1 is None else np.linspace(w0, w1, len(pts))[:, None]) / 2
    return np.vstack([pts + nrm * w, (pts - nrm * w)[::-1]])


def _outline_xy(ident: Identity, t):
    """Face outline: elliptic forehead, superellipse jaw (squarer for larger jaw_n), tapered chin."""
    c, s = np.cos(t), np.sin(t)
    lower = s > 0
    e = np.where(lower, 2.0 / ident.jaw_n, 1.0)
    x = np.sign(c) * np.abs(c) ** e * ident.face_w * (1.0 - ident.chin_taper * np.clip(s, 0, None) ** 3)
    y = np.where(lower, np.abs(s) ** e * ident.face_chin, s * ident.face_top)
    return np.stack([CX + x, ident.face_cy + y], 1)


class Geo:
    """Canonical-frame anchor points of one image (identity shape + yaw + expression)."""

    def __init__(self, ident: Identity, im: ImageParams | None):
        self.outline = _outline_xy(ident, np.linspace(0, 2 * math.pi, 96, endpoint=False))
        right = _outline_xy(ident, np.linspace(-math.pi / 2, math.pi / 2, 61))
        self._hw_y, self._hw_x = right[:, 1], right[:, 0] - CX
        yaw, smile = (im.yaw, im.smile) if im is not None else (0.0, 0.0)
        self.eyes = [(CX - ident.eye_half + 3.0 * yaw, ident.eye_y), (CX + ident.eye_half + 3.0 * yaw, ident.eye_y)]
        self.nose = (CX + 7.0 * yaw, ident.eye_y + ident.nose_len)
        mx = CX + 3.5 * yaw
        half = ident.mouth_w / 2 * (1 + 0.08 * smile)
        cy = ident.mouth_y - 3.0 * smile
        self.mouth_l, self.mouth_r, self.mouth_x = (mx - half, cy), (mx + half, cy), mx
        self.mouth_half = half
        self.landmarks = np.array([self.eyes[0], self.eyes[1], self.nose, self.mouth_l, self.mouth_r])

    def hw(self, y):
        """Half width of the face outline at height y (0 above the forehead / below the chin)."""
        return np.interp(y, self._hw_y, self._hw_x, left=0.0, right=0.0)
