"""Procedural face drawing for the synthetic CelebA generator (numpy + PIL only): the face parts
and `render`, which draws one image of a person (people.py) with its five landmarks.

Shapes are built in the canonical face frame (geometry.py) and drawn on a supersampled canvas that
applies the per-image pose (canvas.py); the landmarks are the same canonical points put through
the same transform, so they are exact by construction.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from components.synthetic.canvas import SS, Canvas, background, background_shapes, capture, scale
from components.synthetic.geometry import CX, Geo, bezier, ellipse, outer_arc
from components.synthetic.hair import draw_hair, hair_geometry
from components.synthetic.people import Identity, ImageParams


def _draw_body(cv: Canvas, ident: Identity, im: ImageParams, geo: Geo):
    skin = ident.skin
    cy = ident.chin_y
    nw = ident.neck_w
    cv.fill([(CX - nw, cy - 25), (CX + nw, cy - 25), (CX + nw * 1.12, 240), (CX - nw * 1.12, 240)], scale(skin, 0.82))
    cc = im.clothes_colour
    left = np.vstack([[(CX - 110, 260), (CX - 110, cy + 40)],
                      bezier((CX - 100, cy + 36), (CX - 60, cy + 14), (CX - nw - 2, cy + 16), 8)])
    neckline = bezier((CX - nw - 2, cy + 16), (CX, cy + 40), (CX + nw + 2, cy + 16), 10)
    right = left[::-1] * (-1, 1) + (2 * CX, 0)
    cv.fill(np.vstack([left, neckline, right]), cc)
    if ident.necktie:
        cv.fill([(CX - nw + 1, cy + 17), (CX, cy + 30), (CX - 3, cy + 33), (CX - nw - 4, cy + 20)], (238, 238, 235))
        cv.fill([(CX + nw - 1, cy + 17), (CX, cy + 30), (CX + 3, cy + 33), (CX + nw + 4, cy + 20)], (238, 238, 235))
        tie = [(CX - 3, cy + 27), (CX + 3, cy + 27), (CX + 5, cy + 55), (CX, cy + 60), (CX - 5, cy + 55)]
        cv.fill(tie, scale(np.asarray(cc)[::-1], 0.6))
    if ident.necklace:
        chain = bezier((CX - nw, cy + 6), (CX, cy + 32), (CX + nw, cy + 6), 16)
        cv.line(chain, 1.1, ident.earring_colour)
        cv.fill(ellipse(CX, cy + 20, 2.2, 2.8, 12), ident.earring_colour)
    for side in (-1, 1):  # ears, partly covered by the face drawn next
        ex = CX + side * (geo.hw(ident.eye_y + 12) - 0.5)
        ear = ellipse(ex, ident.eye_y + 13, 5.0, 10.5, 20)
        cv.fill(ear, scale(skin, 0.93))
        cv.line(ellipse(ex + side * 1.2, ident.eye_y + 13, 2.6, 7.0, 12, *outer_arc(side)), 0.8, scale(skin, 0.7), 0.6)
        if ident.earrings:
            cv.fill(ellipse(ex + side * 0.5, ident.eye_y + 25, 2.0, 2.4, 12), ident.earring_colour)


def _draw_skin(cv: Canvas, ident: Identity, im: ImageParams, geo: Geo):
    skin = ident.skin
    if ident.double_chin:
        cv.fill(ellipse(CX, ident.chin_y + 1.5, 17, 6, 20), skin)
    cv.fill(geo.outline, skin)
    cv.line(geo.outline, 3.0, scale(skin, 0.72), 0.22, closed=True)  # soft edge shading
    if ident.double_chin:
        cv.line(bezier((CX - 15, ident.chin_y + 1), (CX, ident.chin_y + 10), (CX + 15, ident.chin_y + 1)),
                1.0, scale(skin, 0.7), 0.5)
    (lx, ly), (rx, ry) = geo.eyes
    if ident.rosy:
        cv.blend([ellipse(lx - 2, ly + 19, 8, 5.5), ellipse(rx + 2, ry + 19, 8, 5.5)], (225, 95, 105), 0.32)
    # Age (Young = False) is drawn as lines a judge can read at 64 px: forehead lines, deep
    # nasolabial folds, marionette lines below the mouth corners and crow's feet (_draw_eyes).
    if not ident.young:  # forehead lines
        for k in range(2 + ident.hair_seed % 2):
            y = ident.eye_y - 24 - 5.5 * k
            cv.line(bezier((CX - 18, y + 1), (CX, y - 1.5), (CX + 18, y + 1), 10), 1.6, scale(skin, 0.6), 0.6)
    # Nasolabial folds: deeper with age and with a smile.
    alpha = min(0.75, (0.0 if ident.young else 0.5) + 0.35 * im.smile)
    if alpha > 0.05:
        nx, ny = geo.nose
        for side, corner in ((-1, geo.mouth_l), (1, geo.mouth_r)):
            p0 = (nx + side * (ident.nose_w + 2), ny - 2)
            p2 = (corner[0] + side * 3, corner[1] + 4)
            cv.line(bezier(p0, (p0[0] + side * 7, (p0[1] + p2[1]) / 2), p2, 10), 0.9 if ident.young else 1.5,
                    scale(skin, 0.62), alpha)
    if not ident.young:  # marionette lines
        for side, corner in ((-1, geo.mouth_l), (1, geo.mouth_r)):
            cv.line(bezier((corner[0] + side * 1.5, corner[1] + 2.5), (corner[0] + side * 3.5, corner[1] + 6.5),
                           (corner[0] + side * 3.0, corner[1] + 11.0), 8), 1.3, scale(skin, 0.62), 0.5)


def _draw_facial_hair(cv: Canvas, ident: Identity, im: ImageParams, geo: Geo):
    nx, ny = geo.nose
    lower = geo.outline[geo.outline[:, 1] > ny - 3]
    lower = lower[np.argsort(np.arctan2(lower[:, 1] - ident.face_cy, lower[:, 0] - CX))[::-1]]  # left -> right
    top = [(CX + geo.hw(ny - 3) - 1, ny - 3), (nx + ident.nose_w + 3, ny + 2), (nx - ident.nose_w - 3, ny + 2),
           (CX - geo.hw(ny - 3) + 1, ny - 3)]
    region = np.vstack([lower, top])  # jaw left -> right, then back along the cheeks
    col = ident.beard_colour
    if ident.stubble:
        cv.blend([region], scale(col, 0.8), 0.55, density=0.45)
    if ident.beard:
        out = lower + (lower - (CX, ident.face_cy)) * 0.04
        mouth_hole = bezier((geo.mouth_r[0] + 4, geo.mouth_r[1] - 3), (geo.mouth_x, ident.mouth_y + 22),
                             (geo.mouth_l[0] - 4, geo.mouth_l[1] - 3), 12)
        left_cheek = (CX - geo.hw(ny + 2) + 5, ny + 2)
        right_cheek = (CX + geo.hw(ny + 2) - 5, ny + 2)
        beard = np.vstack([out, [right_cheek], mouth_hole, [left_cheek]])
        cv.blend([beard], col, 0.9)
        cv.blend([beard], scale(col, 0.6), 0.6, density=0.3)
    if ident.goatee:
        y0 = ident.mouth_y + ident.lip_bot + 2.5 + im.mouth_open
        w = ident.mouth_w * 0.28
        goatee = [(geo.mouth_x - w, y0), (geo.mouth_x + w, y0), (geo.mouth_x + w * 0.8, ident.chin_y - 1),
                  (geo.mouth_x, ident.chin_y + 1.5), (geo.mouth_x - w * 0.8, ident.chin_y - 1)]
        cv.blend([np.asarray(goatee)], col, 0.9)


def _draw_eyes(cv: Canvas, ident: Identity, im: ImageParams, geo: Geo):
    skin = ident.skin
    for side, (ex, ey) in zip((-1, 1), geo.eyes):
        rx = ident.eye_rx * (1 - 0.1 * im.yaw * side)  # the far eye looks narrower
        ry = ident.eye_ry
        cv.blend([ellipse(ex, ey - 1, rx + 3.5, ry + 4.5, 20)], scale(skin, 0.78), 0.25)  # socket shadow
        if ident.makeup:
            cv.blend([ellipse(ex, ey - ry - 1.5, rx + 1.5, ry + 1.0, 20)], ident.shadow_colour, 0.38)
        outer, inner = (ex + side * rx, ey - 0.6), (ex - side * rx, ey + 0.3)
        upper = bezier(outer, (ex, ey - 2 * ry), inner, 16)
        lower = bezier(inner, (ex, ey + 1.5 * ry), outer, 16)
        cv.fill(np.vstack([upper, lower]), (236, 232, 226))

        def clipped_disc(r):  # a disc clipped by the lids, so the iris never spills onto skin
            xs = np.linspace(ex - r, ex + r, 17)
            h = np.sqrt(np.clip(r**2 - (xs - ex) ** 2, 0, None))
            order_u, order_l = np.argsort(upper[:, 0]), np.argsort(lower[:, 0])
            lid_u = np.interp(xs, upper[order_u, 0], upper[order_u, 1])
            lid_l = np.interp(xs, lower[order_l, 0], lower[order_l, 1])
            top = np.maximum(ey - h, lid_u)
            bot = np.maximum(np.minimum(ey + h, lid_l), top)
            return np.vstack([np.stack([xs, top], 1), np.stack([xs, bot], 1)[::-1]])

        cv.fill(clipped_disc(0.46 * ident.eye_rx), ident.iris)
        cv.fill(clipped_disc(0.21 * ident.eye_rx), (6, 5, 6))  # darkest thing in the face: the landmark
        liner = (45, 32, 36) if ident.makeup else scale(skin, 0.38)
        cv.line(upper, 1.5 if ident.makeup else 0.9, liner)
        cv.line(lower, 0.5, scale(skin, 0.65), 0.7)
        if not ident.young:  # crow's feet: three short lines fanning out from the outer corner
            for k in (-1, 0, 1):
                cv.line(np.array([(ex + side * (rx + 1.5), ey + 1.6 * k), (ex + side * (rx + 7.0), ey + 3.4 * k)]),
                        1.1, scale(skin, 0.62), 0.5)
        if ident.bags:
            cv.line(bezier((ex - side * rx * 0.7, ey + ry + 1.5), (ex, ey + ry + 5.5), (ex + side * rx * 0.9, ey + ry + 1.0)),
                    1.0, scale(skin, 0.72), 0.45)
        # Eyebrow: thick at the inner end, tapering outwards, arch peak toward the outer end.
        by = ey - ident.brow_gap
        b_in, b_out = (ex - side * rx * 0.9, by + 1.0), (ex + side * rx * 1.3, by + 2.0)
        ctrl = (ex + side * rx * 0.3, 2 * (by - ident.brow_arch) - (b_in[1] + b_out[1]) / 2)
        cv.line(bezier(b_in, ctrl, b_out, 14), ident.brow_thick, ident.brow_colour, 0.92, ident.brow_thick * 0.5)


def _draw_nose(cv: Canvas, ident: Identity, im: ImageParams, geo: Geo):
    skin = ident.skin
    nx, ny = geo.nose
    w = ident.nose_w
    shade = scale(skin, 0.6)
    side = 1 if im.yaw < 0 else -1  # draw the bridge line on the side turned away
    bridge = bezier((CX + 4.0 * im.yaw + side * 4.5, ident.eye_y + 3), (nx + side * w * 0.5, ny - 10),
                     (nx + side * w * 0.85, ny - 5), 10)
    cv.line(bridge, 1.1, shade, 0.35)
    cv.blend([ellipse(nx, ny - 3.5, w * 0.45, 2.2, 14)], scale(skin, 1.12), 0.3)  # tip highlight
    base = bezier((nx - w, ny - 2.5), (nx, ny + 2.5), (nx + w, ny - 2.5), 14)  # passes through the tip (nx, ny)
    cv.line(base, 1.0, shade, 0.6)
    for s in (-1, 1):
        cv.fill(ellipse(nx + s * w * 0.48, ny - 0.9, 1.7, 0.95, 12), scale(skin, 0.35))
        cv.line(ellipse(nx + s * w, ny - 3.5, 2.0, 2.6, 10, *outer_arc(s)), 0.8, shade, 0.5)  # alar wing


def _draw_mouth(cv: Canvas, ident: Identity, im: ImageParams, geo: Geo):
    (lx, ly), (rx, ry), mx = geo.mouth_l, geo.mouth_r, geo.mouth_x
    mid = ident.mouth_y + 1.5 * im.smile
    o = im.mouth_open

    def curve(centre_y, n=17):
        # Quadratic through both corners with its middle at centre_y.
        return bezier((lx, ly), (mx, 2 * centre_y - (ly + ry) / 2), (rx, ry), n)

    upper_in, lower_in = curve(mid - 0.4 * o), curve(mid + 0.6 * o)
    upper_out = curve(mid - 0.4 * o - ident.lip_top)
    u = (upper_out[:, 0] - mx) / geo.mouth_half
    upper_out[:, 1] += 0.9 * np.exp(-((u / 0.18) ** 2))  # cupid's bow dip
    lower_out = curve(mid + 0.6 * o + ident.lip_bot)
    if o > 0:
        cv.fill(np.vstack([upper_in, lower_in[::-1]]), (70, 24, 30))
        if im.smiling:
            teeth = np.vstack([upper_in, (upper_in + (0, min(0.55 * o, 2.5)))[::-1]])
            cv.fill(teeth, (235, 232, 222))
    cv.fill(np.vstack([upper_out, upper_in[::-1]]), scale(ident.lip_colour, 0.92))
    cv.fill(np.vstack([lower_in, lower_out[::-1]]), ident.lip_colour)
    cv.line(upper_in if o == 0 else lower_in, 0.8, scale(ident.lip_colour, 0.45), 0.8)
    if ident.mustache:
        top = upper_out + (0, -0.6)
        ny = geo.nose[1]
        thick = np.clip(top[:, 1] - (ny + 2.2), 2.0, 5.5)
        band = np.vstack([(lx - 2.5, ly + 1.5), top, (rx + 2.5, ry + 1.5), (top - np.stack([0 * thick, thick], 1))[::-1]])
        cv.blend([band], ident.beard_colour, 0.92)


def _draw_hat(cv: Canvas, ident: Identity, im: ImageParams):
    y = ident.hairline_y + im.hat_drop
    w = ident.face_w + ident.hair_vol + 3
    crown = np.vstack([ellipse(CX, y, w, im.hat_height, 30, math.pi, 2 * math.pi), [(CX + w, y + 2), (CX - w, y + 2)]])
    cv.fill(crown, im.hat_colour)
    cv.fill(ellipse(CX, y + 1, w + 12, 5.0, 30), scale(im.hat_colour, 0.8))
    cv.line(ellipse(CX, y - 6, w * 0.99, 3.0, 24, 0, math.pi), 3.0, scale(im.hat_colour, 0.55), 0.8)


def _draw_glasses(cv: Canvas, ident: Identity, geo: Geo):
    gx, gy = ident.glasses_gap
    fw = ident.glasses_width
    rims = []
    for side, (ex, ey) in zip((-1, 1), geo.eyes):
        a = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        e = 1.0 if ident.glasses_round else 0.45  # superellipse: round or rounded-rectangle lenses
        c, s = np.cos(a), np.sin(a)
        rim = np.stack([ex + (ident.eye_rx + gx) * np.sign(c) * np.abs(c) ** e,
                        ey + 1.0 + (ident.eye_ry + gy) * np.sign(s) * np.abs(s) ** e], 1)
        rims.append(rim)
        if ident.glasses_tint > 0.02:
            cv.blend([rim], (60, 70, 80), ident.glasses_tint)
        # Temple arm from the outer rim edge to the side of the face.
        x0 = ex + side * (ident.eye_rx + gx)
        cv.line([(x0, ey - 1), (CX + side * (geo.hw(ey) + 1), ey - 2)], fw, ident.glasses_colour)
    for rim in rims:
        cv.line(rim, fw, ident.glasses_colour, closed=True)
    (lx, ly), (rx, ry) = geo.eyes
    bridge = bezier((lx + ident.eye_rx + gx - 0.5, ly - 1), ((lx + rx) / 2, (ly + ry) / 2 - 5), (rx - ident.eye_rx - gx + 0.5, ry - 1), 10)
    cv.line(bridge, fw, ident.glasses_colour)


def render(ident: Identity, im: ImageParams, clean: bool = False) -> tuple[Image.Image, np.ndarray]:
    """Draws one 178x218 RGB face. Returns (image, landmarks) with landmarks a (5, 2) float array
    of pixel coordinates: left eye, right eye, nose tip, left and right mouth corner (pupil centres
    and the drawn tip / corner points). clean=True skips blur, lighting and pixel noise."""
    rng = np.random.default_rng(im.texture_seed)
    geo = Geo(ident, im)
    cv = Canvas(background(rng), im, rng)
    background_shapes(cv, rng)
    hair = hair_geometry(ident)
    draw_hair(cv, ident, hair, front=False)
    _draw_body(cv, ident, im, geo)
    _draw_skin(cv, ident, im, geo)
    _draw_facial_hair(cv, ident, im, geo)
    _draw_eyes(cv, ident, im, geo)
    _draw_nose(cv, ident, im, geo)
    _draw_mouth(cv, ident, im, geo)
    draw_hair(cv, ident, hair, front=True)
    if im.hat:
        _draw_hat(cv, ident, im)
    if im.glasses:
        _draw_glasses(cv, ident, geo)
    img = cv.img.reduce(SS)
    landmarks = cv.pose(geo.landmarks)
    if clean:
        return img, landmarks
    return capture(img, im, rng), landmarks
