"""Hair of the synthetic faces: its polygons (per identity, cached) and how they are drawn.

The back of the hair is drawn before the body and face, the cap, side locks, sideburns, bangs and
strands after them.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from components.synthetic.canvas import Canvas, scale
from components.synthetic.geometry import CX, Geo, bezier, ellipse, stroke
from components.synthetic.people import Identity


def _hair_outer(ident: Identity, geo: Geo, hair_rng, y_end: float, flare: float):
    """Outer hair contour: left side bottom -> over the top -> right side bottom."""
    a_w, a_h, cy = ident.face_w + ident.hair_vol, ident.face_top + 0.8 * ident.hair_vol, ident.face_cy
    th = np.linspace(math.pi, 2 * math.pi, 40)
    r = 1.0 + ident.hair_wave / a_w * np.sin(9 * th + hair_rng.uniform(0, 6.3))
    top = np.stack([CX + a_w * r * np.cos(th), cy + a_h * r * np.sin(th)], 1)
    if y_end <= cy:
        return top
    ys = np.linspace(cy, y_end, 16)
    frac = (ys - cy) / (y_end - cy)
    wave = ident.hair_wave * np.sin(ys / 6.0 + hair_rng.uniform(0, 6.3))
    xr = CX + a_w + flare * frac + wave
    xl = CX - a_w - flare * frac - wave
    return np.vstack([np.stack([xl, ys], 1)[::-1], top, np.stack([xr, ys], 1)])


def _hairline(ident: Identity, geo: Geo, temple_y: float, cover: float, n=21):
    """Hairline across the forehead, left temple -> right temple (M-shaped when receding)."""
    hwt = geo.hw(temple_y) - cover
    u = np.linspace(-1, 1, n)
    rec = 9.0 if ident.receding else 0.0
    y = ident.hairline_y + (temple_y - ident.hairline_y) * u**4 - rec * np.exp(-(((np.abs(u) - 0.55) / 0.22) ** 2))
    return np.stack([CX + hwt * u, y], 1)


def _side_lock(ident: Identity, geo: Geo, side: int, temple_y: float, y_end: float, cover: float, flare: float):
    """Hair falling beside the face (side -1 left, +1 right), overlapping the face edge by `cover`."""
    ys = np.linspace(temple_y, y_end, 18)
    frac = (ys - temple_y) / max(y_end - temple_y, 1.0)
    outer = ident.face_w + ident.hair_vol + flare * frac + ident.hair_wave * np.sin(ys / 6.0)
    inner = np.maximum(geo.hw(ys) - cover, ident.neck_w + 1.0)
    inner = np.minimum(inner, outer - 1.0)
    return np.vstack([np.stack([CX + side * outer, ys], 1), np.stack([CX + side * inner, ys], 1)[::-1]])


@functools.lru_cache(maxsize=1024)
def hair_geometry(ident: Identity):
    """Hair polygons depend on the identity only; cached because images of a person repeat them."""
    geo = Geo(ident, None)
    hair_rng = np.random.default_rng(ident.hair_seed)  # same strands/waves in every image of a person
    temple_y = ident.eye_y - 16.0
    if ident.hair_len == "long":
        y_end, flare, cover = ident.chin_y + 30 + 15 * hair_rng.random(), 6.0 + 6 * hair_rng.random(), 3.0 + 5 * hair_rng.random()
    elif ident.hair_len == "medium":
        y_end, flare, cover = ident.mouth_y + 5 * hair_rng.random(), 2.0, 2.0 + 2 * hair_rng.random()
    else:
        y_end, flare, cover = ident.eye_y + 2.0, 0.0, 1.5
    back = _hair_outer(ident, geo, hair_rng, y_end, flare)
    cap_outer = _hair_outer(ident, geo, hair_rng, ident.face_cy - 1.0, 0.0)
    keep = cap_outer[:, 1] <= temple_y + 1.0
    line = _hairline(ident, geo, temple_y, cover)
    cap = np.vstack([cap_outer[keep], line[::-1]])
    locks = [_side_lock(ident, geo, s, temple_y, y_end, cover, flare) for s in (-1, 1)]
    bangs = None
    if ident.bangs:
        yb = ident.eye_y - ident.brow_gap - 3.5 - 2 * hair_rng.random()
        xs = np.linspace(-1, 1, 15) * (geo.hw(yb) - cover)
        teeth = yb + np.where(np.arange(15) % 2 == 0, 0.0, -3.0) + hair_rng.uniform(-1, 1, 15)
        bangs = np.vstack([_hairline(ident, geo, temple_y, cover) + (0, -2.0), np.stack([CX + xs, teeth], 1)[::-1]])
    strands = {0.65: [], 1.35: []}
    for _ in range(int(hair_rng.integers(10, 22))):
        u0, u1 = hair_rng.uniform(-0.7, 0.7), hair_rng.uniform(-0.9, 0.9)
        p0 = (CX + u0 * ident.face_w * 0.6, ident.face_cy - ident.face_top - ident.hair_vol * 0.3)
        p2 = (CX + u1 * (geo.hw(temple_y) - cover), ident.hairline_y + 2.0 - 5 * u1**2)
        curve = bezier(p0, ((p0[0] + p2[0]) / 2 + hair_rng.normal(0, 4), (p0[1] + p2[1]) / 2), p2, 10)
        width = hair_rng.uniform(0.6, 1.3)
        strands[0.65 if hair_rng.random() < 0.6 else 1.35].append(stroke(curve, width, width * 0.4))
    return back, cap, locks, bangs, strands, temple_y


def draw_hair(cv: Canvas, ident: Identity, hair, front: bool):
    """Draws `hair` (from hair_geometry): front=False the hair behind the head, front=True the rest."""
    back, cap, locks, bangs, strands, _ = hair
    col = ident.hair_colour
    if not front:
        if not ident.bald:
            cv.fill(back, scale(col, 0.82))
        return
    if ident.bald:
        if not ident.young:  # the horseshoe of hair that stays
            for s in (-1, 1):
                x0 = CX + s * (ident.face_w + 1.5)
                cv.blend([ellipse(x0, ident.eye_y - 2, 3.5, 12, 16)], col, 0.85, density=0.7)
        return
    cv.fill(cap, col)
    for lock in locks:
        cv.fill(lock, col)
    if ident.sideburns:
        for s in (-1, 1):
            x = CX + s * (ident.face_w - 1.5)
            cv.fill([(x - 2.5, ident.eye_y - 8), (x + 2.5, ident.eye_y - 8), (x + 2, ident.eye_y + 22), (x - 2, ident.eye_y + 22)], col)
    if bangs is not None:
        cv.fill(bangs, col)
    for k, group in strands.items():  # one blend per shade: strands are many and cheap to batch
        cv.blend(group, scale(col, k), 0.3)
