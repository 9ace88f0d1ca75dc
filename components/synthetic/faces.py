"""Procedural face drawing for the synthetic CelebA generator (numpy + PIL only).

Every shape is built in one canonical 178x218 face frame (eyes near CelebA's aligned positions,
y pointing down, coordinates are pixel indices) and mapped through a single per-image similarity
transform. The landmarks written next to an image are those transformed canonical points, so they
are exact by construction. Polygons are drawn at SS x resolution and box-downsampled, which
anti-aliases every edge.

Gender is carried by several overlapping cues (jaw shape, face size, brow thickness, hair length,
facial hair, lipstick/makeup, neck width); none of them decides it alone.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 178, 218
SS = 2  # supersampling factor
CX = 88.5  # canonical face mid-line
EYE_Y = 111.0  # canonical eye line (CelebA aligned: left eye ~(69,111), right eye ~(108,111))
POSE_CENTRE = np.array([88.5, 125.0])

HAIR_COLOURS = {
    "black": (30, 24, 22), "brown": (98, 64, 40), "blond": (206, 176, 118),
    "gray": (168, 165, 160), "red": (142, 64, 36),
}
IRIS_COLOURS = ((95, 62, 38), (62, 40, 28), (122, 96, 52), (78, 110, 72), (72, 112, 150))
IRIS_P = (0.45, 0.2, 0.12, 0.1, 0.13)
LIPSTICKS = ((172, 34, 52), (192, 62, 84), (138, 28, 42), (204, 92, 112), (160, 50, 90))
EYESHADOWS = ((120, 80, 60), (110, 70, 120), (70, 90, 130), (150, 110, 90))

# Thresholds that turn continuous identity parameters into CelebA attributes.
BUSHY_BROW = 3.4
ARCHED_BROW = 2.6
NARROW_EYE = 3.4
BIG_NOSE = 1.0  # z-score of nose size
BIG_LIPS = 7.0  # upper + lower lip thickness in px
CHUBBY_Z = 1.25


@dataclass(frozen=True)
class Identity:
    """What stays fixed across all images of one person (canonical-frame pixels)."""

    male: bool
    young: bool
    skin: tuple
    pale: bool
    face_w: float  # half width of the face outline
    face_top: float  # outline centre -> forehead top
    face_chin: float  # outline centre -> chin
    jaw_n: float  # superellipse exponent of the lower face: 2 oval, >3 square jaw
    chin_taper: float
    chin_y: float
    chubby: bool
    double_chin: bool
    oval: bool
    eye_y: float
    eye_half: float  # half the distance between pupils
    eye_rx: float
    eye_ry: float
    iris: tuple
    brow_thick: float
    brow_arch: float
    brow_gap: float
    brow_colour: tuple
    nose_len: float
    nose_w: float
    big_nose: bool
    mouth_y: float
    mouth_w: float
    lip_top: float
    lip_bot: float
    lip_colour: tuple
    lipstick: bool
    makeup: bool
    shadow_colour: tuple
    hair_kind: str
    hair_colour: tuple
    hair_len: str  # short / medium / long
    hair_vol: float
    hair_wave: float
    wavy: bool
    straight: bool
    bangs: bool
    bald: bool
    receding: bool
    hairline_y: float
    sideburns: bool
    beard: bool
    goatee: bool
    mustache: bool
    stubble: bool
    beard_colour: tuple
    rosy: bool
    earrings: bool
    earring_colour: tuple
    necklace: bool
    necktie: bool
    bags: bool
    neck_w: float
    glasses_wearer: bool
    glasses_colour: tuple
    glasses_round: bool
    glasses_gap: tuple
    glasses_width: float
    glasses_tint: float
    hair_seed: int

    @property
    def face_cy(self) -> float:
        return self.chin_y - self.face_chin


@dataclass(frozen=True)
class ImageParams:
    """What changes from one image of a person to the next (nuisance + expression + accessories)."""

    roll_deg: float
    scale: float
    tx: float
    ty: float
    yaw: float  # -1..1, shifts inner features sideways relative to the outline
    smile: float  # 0..1
    mouth_open: float  # px between the lips
    glasses: bool
    hat: bool
    hat_colour: tuple
    hat_height: float
    hat_drop: float
    blur: float  # Gaussian radius, 0 = sharp
    light_angle: float
    light_strength: float
    exposure: float
    noise: float
    jpeg_quality: int
    clothes_colour: tuple
    texture_seed: int

    @property
    def smiling(self) -> bool:
        return self.smile > 0.4


def _clip(rng, mean, sd, lo, hi):
    return float(np.clip(rng.normal(mean, sd), lo, hi))


def _jitter(rng, colour, sd):
    return tuple(float(v) for v in np.clip(np.asarray(colour, float) + rng.normal(0, sd, 3), 0, 255))


def sample_identity(rng: np.random.Generator, male: bool) -> Identity:
    """Draws one person. Gender shifts many distributions, but they all overlap."""
    g = 1.0 if male else 0.0
    young = bool(rng.random() < 0.76)
    # Skin: a light..dark continuum plus a little hue jitter.
    t = float(np.clip(rng.beta(2.0, 2.6) + 0.04 * g, 0, 1))
    # Piecewise-linear through a warm mid tone (a straight light->dark blend looks grey).
    skin = np.array([np.interp(t, [0, 0.5, 1], ch) for ch in ((246, 208, 100), (216, 152, 66), (194, 118, 46))])
    skin = _jitter(rng, skin + np.array([4, -2, -4]) * g, 5)
    face_w_mean = 45.0 + 3.0 * g
    face_w = float(rng.normal(face_w_mean, 2.6))
    chubby = face_w > face_w_mean + CHUBBY_Z * 2.6  # (per-gender z-score)
    jaw_n = _clip(rng, 2.25 + 0.9 * g, 0.35, 1.8, 4.0)
    chin_taper = _clip(rng, 0.24 - 0.08 * g, 0.07, 0.0, 0.42)
    eye_y = EYE_Y + rng.normal(0, 1.2)
    mouth_y = eye_y + rng.normal(41.0, 1.6)
    chin_y = mouth_y + rng.normal(30.0 + 2.5 * g, 2.2)
    eye_ry = _clip(rng, 3.95, 0.42, 2.9, 5.0)
    nose_len = float(rng.normal(23.0 + 1.2 * g, 1.8))
    nose_w = float(rng.normal(7.0 + 0.8 * g, 0.8))
    nose_z = ((nose_len - 23.0 - 1.2 * g) / 1.8 + (nose_w - 7.0 - 0.8 * g) / 0.8) / math.sqrt(2) + 0.5 * g
    lip_top = _clip(rng, 2.7 - 0.4 * g, 0.45, 1.4, 4.5)
    lip_bot = _clip(rng, 3.7 - 0.5 * g, 0.55, 1.8, 5.5)
    lipstick = bool(rng.random() < (0.015 if male else 0.62))
    makeup = (not male) and bool(rng.random() < (0.7 if lipstick else 0.1))
    if lipstick:
        lip_colour = _jitter(rng, LIPSTICKS[rng.integers(len(LIPSTICKS))], 10)
    else:
        lip_colour = _jitter(rng, np.asarray(skin) * np.array([0.85, 0.58, 0.58]) + np.array([22, 0, 6]), 6)

    # Hair: older people go gray / bald / receding more often; long hair is mostly female.
    bald = male and bool(rng.random() < (0.03 if young else 0.22))
    kinds = ["black", "brown", "blond", "gray", "red"]
    p = np.array([0.36, 0.36, 0.09 if male else 0.24, 0.0 if young else 0.45, 0.05])
    if young:
        p[3] = 0.015
    hair_kind = kinds[rng.choice(5, p=p / p.sum())]
    hair_colour = _jitter(rng, HAIR_COLOURS[hair_kind], 8)
    lengths = ["short", "medium", "long"]
    hair_len = lengths[rng.choice(3, p=[0.76, 0.2, 0.04] if male else [0.08, 0.2, 0.72])]
    wave_u = rng.random()
    wavy, straight = bool(wave_u < 0.3), bool(wave_u > 0.55)
    hair_wave = float(rng.uniform(2.2, 3.8) if wavy else (0.0 if straight else 1.0))
    bangs = (not bald) and bool(rng.random() < (0.1 if male else 0.24))
    receding = (not bald) and bool(rng.random() < (0.35 if male and not young else 0.06 if male else 0.02))
    hairline_y = eye_y - rng.normal(45.0, 2.5) - (8.0 if receding else 0.0)
    sideburns = male and hair_len != "long" and not bald and bool(rng.random() < 0.15)
    beard = male and bool(rng.random() < 0.22)
    goatee = male and not beard and bool(rng.random() < 0.12)
    mustache = male and bool(rng.random() < (0.6 if beard else 0.18))
    stubble = male and not beard and bool(rng.random() < 0.45)
    if bald:
        beard_colour = _jitter(rng, HAIR_COLOURS[["black", "brown", "gray"][rng.integers(3)]], 8)
    else:
        beard_colour = tuple(c * 0.8 for c in hair_colour)
    brow_base = np.asarray(hair_colour) * (0.55 if hair_kind in ("blond", "gray") else 0.8)
    glasses_wearer = bool(rng.random() < (0.1 if young else 0.28))
    frame = [(20, 20, 22), (90, 60, 40), (150, 150, 155), (120, 30, 40), (30, 40, 90)][rng.integers(5)]
    return Identity(
        male=male, young=young, skin=skin, pale=t < 0.1,
        face_w=face_w, face_top=_clip(rng, 69.0 + 1.5 * g, 2.5, 60, 80), face_chin=_clip(rng, 67.0 + 2.0 * g, 2.5, 58, 78),
        jaw_n=jaw_n, chin_taper=chin_taper, chin_y=float(chin_y), chubby=bool(chubby),
        double_chin=bool(chubby and rng.random() < 0.5 or rng.random() < 0.02),
        oval=bool(jaw_n < 2.35 and 0.16 < chin_taper < 0.34),
        eye_y=float(eye_y), eye_half=_clip(rng, 19.5, 1.2, 16.5, 22.5),
        eye_rx=_clip(rng, 8.0, 0.6, 6.5, 9.5), eye_ry=eye_ry,
        iris=_jitter(rng, IRIS_COLOURS[rng.choice(5, p=IRIS_P)], 8),
        brow_thick=_clip(rng, 2.2 + 1.2 * g, 0.55, 1.2, 4.6), brow_arch=_clip(rng, 2.3 - 0.9 * g, 0.8, 0.0, 4.2),
        brow_gap=_clip(rng, 10.5, 1.1, 8.0, 13.5), brow_colour=_jitter(rng, brow_base, 6),
        nose_len=nose_len, nose_w=nose_w, big_nose=bool(nose_z > BIG_NOSE),
        mouth_y=float(mouth_y), mouth_w=_clip(rng, 32.0 + 1.5 * g, 2.2, 25, 40),
        lip_top=lip_top, lip_bot=lip_bot, lip_colour=lip_colour, lipstick=lipstick, makeup=makeup,
        shadow_colour=EYESHADOWS[rng.integers(len(EYESHADOWS))],
        hair_kind=hair_kind, hair_colour=hair_colour, hair_len=hair_len,
        hair_vol=_clip(rng, 8.0 - 2.0 * g, 2.5, 2.0, 14.0), hair_wave=hair_wave, wavy=wavy, straight=straight,
        bangs=bangs, bald=bald, receding=receding, hairline_y=float(hairline_y), sideburns=sideburns,
        beard=beard, goatee=goatee, mustache=mustache, stubble=stubble, beard_colour=beard_colour,
        rosy=bool(rng.random() < (0.03 if male else 0.12)),
        earrings=bool(rng.random() < (0.03 if male else 0.35)),
        earring_colour=[(212, 175, 55), (200, 200, 205), (180, 40, 60)][rng.integers(3)],
        necklace=bool(rng.random() < (0.02 if male else 0.2)),
        necktie=bool(rng.random() < (0.12 if male else 0.01)),
        bags=bool(rng.random() < (0.12 if young else 0.5)),
        neck_w=float(face_w * rng.normal(0.5 + 0.08 * g, 0.03)),
        glasses_wearer=glasses_wearer, glasses_colour=frame, glasses_round=bool(rng.random() < 0.4),
        glasses_gap=(float(rng.uniform(3.0, 5.0)), float(rng.uniform(4.5, 7.5))),
        glasses_width=float(rng.uniform(0.8, 2.0)), glasses_tint=float(rng.uniform(0.0, 0.25)),
        hair_seed=int(rng.integers(2**31)),
    )


def sample_image(rng: np.random.Generator, ident: Identity) -> ImageParams:
    """Draws pose, expression, lighting, accessories and capture settings for one image."""
    smiling = rng.random() < 0.48
    glasses = rng.random() < (0.85 if ident.glasses_wearer else 0.015)
    return ImageParams(
        roll_deg=_clip(rng, 0.0, 5.0, -12.0, 12.0), scale=_clip(rng, 1.0, 0.035, 0.92, 1.08),
        tx=_clip(rng, 0.0, 2.5, -6.0, 6.0), ty=_clip(rng, 0.0, 2.5, -6.0, 6.0),
        yaw=_clip(rng, 0.0, 0.4, -1.0, 1.0),
        smile=float(rng.uniform(0.5, 1.0) if smiling else rng.uniform(0.0, 0.25)),
        mouth_open=float(rng.uniform(1.5, 5.5) if rng.random() < 0.45 else 0.0),
        glasses=bool(glasses), hat=bool(rng.random() < 0.045),
        hat_colour=tuple(float(v) for v in rng.uniform(20, 230, 3)),
        hat_height=float(rng.uniform(36, 52)), hat_drop=float(rng.uniform(-3, 7)),
        blur=float(rng.uniform(1.2, 2.4) if rng.random() < 0.05 else 0.0),
        light_angle=float(rng.uniform(0, 2 * math.pi)), light_strength=float(rng.uniform(0.0, 0.35)),
        exposure=float(math.exp(rng.normal(0.0, 0.12))), noise=float(rng.uniform(1.0, 7.0)),
        jpeg_quality=int(rng.integers(60, 96)),
        clothes_colour=tuple(float(v) for v in rng.uniform(15, 240, 3)),
        texture_seed=int(rng.integers(2**31)),
    )


def drawn_attributes(ident: Identity, im: ImageParams) -> dict[str, bool]:
    """The CelebA attributes that this drawing actually shows (the rest are random labels)."""
    hair = not ident.bald
    return {
        "5_o_Clock_Shadow": ident.stubble, "Arched_Eyebrows": ident.brow_arch > ARCHED_BROW,
        "Bags_Under_Eyes": ident.bags, "Bald": ident.bald and not im.hat, "Bangs": ident.bangs,
        "Big_Lips": ident.lip_top + ident.lip_bot > BIG_LIPS, "Big_Nose": ident.big_nose,
        "Black_Hair": hair and ident.hair_kind == "black", "Blond_Hair": hair and ident.hair_kind == "blond",
        "Blurry": im.blur > 0, "Brown_Hair": hair and ident.hair_kind == "brown",
        "Bushy_Eyebrows": ident.brow_thick > BUSHY_BROW, "Chubby": ident.chubby, "Double_Chin": ident.double_chin,
        "Eyeglasses": im.glasses, "Goatee": ident.goatee, "Gray_Hair": hair and ident.hair_kind == "gray",
        "Heavy_Makeup": ident.makeup, "Male": ident.male, "Mouth_Slightly_Open": im.mouth_open > 0,
        "Mustache": ident.mustache, "Narrow_Eyes": ident.eye_ry < NARROW_EYE,
        "No_Beard": not (ident.beard or ident.goatee), "Oval_Face": ident.oval, "Pale_Skin": ident.pale,
        "Receding_Hairline": ident.receding, "Rosy_Cheeks": ident.rosy, "Sideburns": ident.sideburns or ident.beard,
        "Smiling": im.smiling, "Straight_Hair": hair and ident.straight, "Wavy_Hair": hair and ident.wavy,
        "Wearing_Earrings": ident.earrings, "Wearing_Hat": im.hat, "Wearing_Lipstick": ident.lipstick,
        "Wearing_Necklace": ident.necklace, "Wearing_Necktie": ident.necktie, "Young": ident.young,
    }


# ---------------------------------------------------------------- geometry helpers (canonical frame)

# Small cached bases: the drawing makes thousands of tiny curves, so numpy call overhead matters.
@functools.lru_cache(maxsize=None)
def _bezier_basis(n):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return np.hstack([(1 - t) ** 2, 2 * (1 - t) * t, t**2])


@functools.lru_cache(maxsize=None)
def _unit_circle(n, a0, a1):
    a = np.linspace(a0, a1, n, endpoint=abs(a1 - a0 - 2 * math.pi) > 1e-9)
    return np.stack([np.cos(a), np.sin(a)], 1)


def _bezier(p0, c, p2, n=14):
    """Quadratic Bezier from p0 to p2 with control point c, n samples."""
    return _bezier_basis(n) @ np.array([p0, c, p2], float)


def _ellipse(cx, cy, rx, ry, n=28, a0=0.0, a1=2 * math.pi):
    return _unit_circle(n, a0, a1) * (rx, ry) + (cx, cy)


def _outer_arc(side):
    """Angle range of the half ellipse that bulges away from the mid-line on `side` (-1 / +1)."""
    return (-math.pi / 2, math.pi / 2) if side > 0 else (math.pi / 2, 3 * math.pi / 2)


def _stroke(pts, w0, w1=None, closed=False):
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


class _Geo:
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


# ---------------------------------------------------------------- canvas

_NOISE = np.random.default_rng(12345).standard_normal((HEIGHT + 64, WIDTH + 64, 3), dtype=np.float32)
_LY, _LX = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
_LX = (_LX - WIDTH / 2) / (WIDTH / 2)
_LY = (_LY - HEIGHT / 2) / (HEIGHT / 2)


def _rgb(colour):
    r, g, b = colour
    return (int(min(255.0, max(0.0, r)) + 0.5), int(min(255.0, max(0.0, g)) + 0.5), int(min(255.0, max(0.0, b)) + 0.5))


def _scale(colour, k):
    return tuple(v * k for v in colour)


class _Canvas:
    """A supersampled RGB image whose drawing calls take canonical-frame points."""

    def __init__(self, bg: Image.Image, im: ImageParams, rng: np.random.Generator):
        self.img = bg
        self.draw = ImageDraw.Draw(self.img)
        self.rng = rng
        a = math.radians(im.roll_deg)
        self._m = im.scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        self._t = POSE_CENTRE + np.array([im.tx, im.ty])

    def pose(self, pts):
        """Canonical frame -> output-image pixel coordinates (the landmark transform)."""
        return (np.asarray(pts, float) - POSE_CENTRE) @ self._m.T + self._t

    def _xy(self, pts):
        # PIL polygon coordinates are continuous (pixel i spans [i, i+1)), so the centre of output
        # pixel l, i.e. supersampled pixels SS*l .. SS*l+SS-1, sits at SS*l + SS/2.
        return self.pose(pts) * SS + SS / 2

    def fill(self, pts, colour):
        self.draw.polygon(self._xy(pts).ravel().tolist(), fill=_rgb(colour))

    def blend(self, polys, colour, alpha, density=None):
        """Alpha-blends polygons; with density, only a random fraction of pixels (hair texture)."""
        qs = [self._xy(p) for p in polys]
        if not qs:
            return
        allq = np.vstack(qs)
        x0, y0 = np.maximum(np.floor(allq.min(0)).astype(int) - 1, 0)
        x1 = min(int(math.ceil(allq[:, 0].max())) + 2, self.img.width)
        y1 = min(int(math.ceil(allq[:, 1].max())) + 2, self.img.height)
        if x1 <= x0 or y1 <= y0:
            return
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        md = ImageDraw.Draw(mask)
        for q in qs:
            md.polygon((q - (x0, y0)).ravel().tolist(), fill=int(round(255 * alpha)))
        if density is not None:
            m = np.asarray(mask) * (self.rng.random((y1 - y0, x1 - x0)) < density)
            mask = Image.fromarray(m.astype(np.uint8))
        self.img.paste(_rgb(colour), (x0, y0, x1, y1), mask)

    def line(self, pts, width, colour, alpha=1.0, width_end=None, closed=False):
        poly = _stroke(pts, width, width_end, closed)
        if alpha >= 1.0:
            self.fill(poly, colour)
        else:
            self.blend([poly], colour, alpha)


@functools.lru_cache(maxsize=None)
def _gradient(direction: int) -> Image.Image:
    """0..255 ramp across the supersampled canvas in one of 32 directions (built once, reused)."""
    a = direction * 2 * math.pi / 32
    gy, gx = np.mgrid[0:HEIGHT * SS, 0:WIDTH * SS].astype(np.float32)
    t = (math.cos(a) * (gx / (WIDTH * SS) * 2 - 1) + math.sin(a) * (gy / (HEIGHT * SS) * 2 - 1))
    return Image.fromarray(np.clip(127.5 + 127.5 * t, 0, 255).astype(np.uint8))


def _background(rng: np.random.Generator) -> Image.Image:
    """Two-colour gradient in a random direction, coloured through per-channel lookup tables."""
    c1, c2 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ramp = _gradient(int(rng.integers(32)))
    k = np.arange(256) / 255.0
    return Image.merge("RGB", [ramp.point([int(a + (b - a) * v + 0.5) for v in k]) for a, b in zip(c1, c2)])


def _background_shapes(cv: _Canvas, rng: np.random.Generator):
    d = cv.draw
    for _ in range(int(rng.integers(2, 7))):
        x, y = rng.uniform(-20, WIDTH * SS + 20), rng.uniform(-20, HEIGHT * SS + 20)
        w, h = rng.uniform(15, 120, 2)
        col = _rgb(rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        if kind == 0:
            d.ellipse([x - w, y - h, x + w, y + h], fill=col)
        elif kind == 1:
            d.rectangle([x - w, y - h, x + w, y + h], fill=col)
        else:
            d.line([x - w, y - h, x + w, y + h], fill=col, width=int(rng.integers(3, 14)))


# ---------------------------------------------------------------- face parts

def _hair_outer(ident: Identity, geo: _Geo, hair_rng, y_end: float, flare: float):
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


def _hairline(ident: Identity, geo: _Geo, temple_y: float, cover: float, n=21):
    """Hairline across the forehead, left temple -> right temple (M-shaped when receding)."""
    hwt = geo.hw(temple_y) - cover
    u = np.linspace(-1, 1, n)
    rec = 9.0 if ident.receding else 0.0
    y = ident.hairline_y + (temple_y - ident.hairline_y) * u**4 - rec * np.exp(-(((np.abs(u) - 0.55) / 0.22) ** 2))
    return np.stack([CX + hwt * u, y], 1)


def _side_lock(ident: Identity, geo: _Geo, side: int, temple_y: float, y_end: float, cover: float, flare: float):
    """Hair falling beside the face (side -1 left, +1 right), overlapping the face edge by `cover`."""
    ys = np.linspace(temple_y, y_end, 18)
    frac = (ys - temple_y) / max(y_end - temple_y, 1.0)
    outer = ident.face_w + ident.hair_vol + flare * frac + ident.hair_wave * np.sin(ys / 6.0)
    inner = np.maximum(geo.hw(ys) - cover, ident.neck_w + 1.0)
    inner = np.minimum(inner, outer - 1.0)
    return np.vstack([np.stack([CX + side * outer, ys], 1), np.stack([CX + side * inner, ys], 1)[::-1]])


@functools.lru_cache(maxsize=1024)
def _hair_geometry(ident: Identity):
    """Hair polygons depend on the identity only; cached because images of a person repeat them."""
    geo = _Geo(ident, None)
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
        curve = _bezier(p0, ((p0[0] + p2[0]) / 2 + hair_rng.normal(0, 4), (p0[1] + p2[1]) / 2), p2, 10)
        width = hair_rng.uniform(0.6, 1.3)
        strands[0.65 if hair_rng.random() < 0.6 else 1.35].append(_stroke(curve, width, width * 0.4))
    return back, cap, locks, bangs, strands, temple_y


def _draw_body(cv: _Canvas, ident: Identity, im: ImageParams, geo: _Geo):
    skin = ident.skin
    cy = ident.chin_y
    nw = ident.neck_w
    cv.fill([(CX - nw, cy - 25), (CX + nw, cy - 25), (CX + nw * 1.12, 240), (CX - nw * 1.12, 240)], _scale(skin, 0.82))
    cc = im.clothes_colour
    left = np.vstack([[(CX - 110, 260), (CX - 110, cy + 40)],
                      _bezier((CX - 100, cy + 36), (CX - 60, cy + 14), (CX - nw - 2, cy + 16), 8)])
    neckline = _bezier((CX - nw - 2, cy + 16), (CX, cy + 40), (CX + nw + 2, cy + 16), 10)
    right = left[::-1] * (-1, 1) + (2 * CX, 0)
    cv.fill(np.vstack([left, neckline, right]), cc)
    if ident.necktie:
        cv.fill([(CX - nw + 1, cy + 17), (CX, cy + 30), (CX - 3, cy + 33), (CX - nw - 4, cy + 20)], (238, 238, 235))
        cv.fill([(CX + nw - 1, cy + 17), (CX, cy + 30), (CX + 3, cy + 33), (CX + nw + 4, cy + 20)], (238, 238, 235))
        tie = [(CX - 3, cy + 27), (CX + 3, cy + 27), (CX + 5, cy + 55), (CX, cy + 60), (CX - 5, cy + 55)]
        cv.fill(tie, _scale(np.asarray(cc)[::-1], 0.6))
    if ident.necklace:
        chain = _bezier((CX - nw, cy + 6), (CX, cy + 32), (CX + nw, cy + 6), 16)
        cv.line(chain, 1.1, ident.earring_colour)
        cv.fill(_ellipse(CX, cy + 20, 2.2, 2.8, 12), ident.earring_colour)
    for side in (-1, 1):  # ears, partly covered by the face drawn next
        ex = CX + side * (geo.hw(ident.eye_y + 12) - 0.5)
        ear = _ellipse(ex, ident.eye_y + 13, 5.0, 10.5, 20)
        cv.fill(ear, _scale(skin, 0.93))
        cv.line(_ellipse(ex + side * 1.2, ident.eye_y + 13, 2.6, 7.0, 12, *_outer_arc(side)), 0.8, _scale(skin, 0.7), 0.6)
        if ident.earrings:
            cv.fill(_ellipse(ex + side * 0.5, ident.eye_y + 25, 2.0, 2.4, 12), ident.earring_colour)


def _draw_skin(cv: _Canvas, ident: Identity, im: ImageParams, geo: _Geo):
    skin = ident.skin
    if ident.double_chin:
        cv.fill(_ellipse(CX, ident.chin_y + 1.5, 17, 6, 20), skin)
    cv.fill(geo.outline, skin)
    cv.line(geo.outline, 3.0, _scale(skin, 0.72), 0.22, closed=True)  # soft edge shading
    if ident.double_chin:
        cv.line(_bezier((CX - 15, ident.chin_y + 1), (CX, ident.chin_y + 10), (CX + 15, ident.chin_y + 1)),
                1.0, _scale(skin, 0.7), 0.5)
    (lx, ly), (rx, ry) = geo.eyes
    if ident.rosy:
        cv.blend([_ellipse(lx - 2, ly + 19, 8, 5.5), _ellipse(rx + 2, ry + 19, 8, 5.5)], (225, 95, 105), 0.32)
    if not ident.young:  # forehead lines
        for k in range(2 + ident.hair_seed % 2):
            y = ident.eye_y - 24 - 5.5 * k
            cv.line(_bezier((CX - 17, y + 1), (CX, y - 1.5), (CX + 17, y + 1), 10), 0.8, _scale(skin, 0.7), 0.35)
    # Nasolabial folds: deeper with age and with a smile.
    alpha = min(0.6, (0.0 if ident.young else 0.3) + 0.35 * im.smile)
    if alpha > 0.05:
        nx, ny = geo.nose
        for side, corner in ((-1, geo.mouth_l), (1, geo.mouth_r)):
            p0 = (nx + side * (ident.nose_w + 2), ny - 2)
            p2 = (corner[0] + side * 3, corner[1] + 4)
            cv.line(_bezier(p0, (p0[0] + side * 7, (p0[1] + p2[1]) / 2), p2, 10), 0.9, _scale(skin, 0.68), alpha)


def _draw_facial_hair(cv: _Canvas, ident: Identity, im: ImageParams, geo: _Geo):
    nx, ny = geo.nose
    lower = geo.outline[geo.outline[:, 1] > ny - 3]
    lower = lower[np.argsort(np.arctan2(lower[:, 1] - ident.face_cy, lower[:, 0] - CX))[::-1]]  # left -> right
    top = [(CX + geo.hw(ny - 3) - 1, ny - 3), (nx + ident.nose_w + 3, ny + 2), (nx - ident.nose_w - 3, ny + 2),
           (CX - geo.hw(ny - 3) + 1, ny - 3)]
    region = np.vstack([lower, top])  # jaw left -> right, then back along the cheeks
    col = ident.beard_colour
    if ident.stubble:
        cv.blend([region], _scale(col, 0.8), 0.55, density=0.45)
    if ident.beard:
        out = lower + (lower - (CX, ident.face_cy)) * 0.04
        mouth_hole = _bezier((geo.mouth_r[0] + 4, geo.mouth_r[1] - 3), (geo.mouth_x, ident.mouth_y + 22),
                             (geo.mouth_l[0] - 4, geo.mouth_l[1] - 3), 12)
        left_cheek = (CX - geo.hw(ny + 2) + 5, ny + 2)
        right_cheek = (CX + geo.hw(ny + 2) - 5, ny + 2)
        beard = np.vstack([out, [right_cheek], mouth_hole, [left_cheek]])
        cv.blend([beard], col, 0.9)
        cv.blend([beard], _scale(col, 0.6), 0.6, density=0.3)
    if ident.goatee:
        y0 = ident.mouth_y + ident.lip_bot + 2.5 + im.mouth_open
        w = ident.mouth_w * 0.28
        goatee = [(geo.mouth_x - w, y0), (geo.mouth_x + w, y0), (geo.mouth_x + w * 0.8, ident.chin_y - 1),
                  (geo.mouth_x, ident.chin_y + 1.5), (geo.mouth_x - w * 0.8, ident.chin_y - 1)]
        cv.blend([np.asarray(goatee)], col, 0.9)


def _draw_eyes(cv: _Canvas, ident: Identity, im: ImageParams, geo: _Geo):
    skin = ident.skin
    for side, (ex, ey) in zip((-1, 1), geo.eyes):
        rx = ident.eye_rx * (1 - 0.1 * im.yaw * side)  # the far eye looks narrower
        ry = ident.eye_ry
        cv.blend([_ellipse(ex, ey - 1, rx + 3.5, ry + 4.5, 20)], _scale(skin, 0.78), 0.25)  # socket shadow
        if ident.makeup:
            cv.blend([_ellipse(ex, ey - ry - 1.5, rx + 1.5, ry + 1.0, 20)], ident.shadow_colour, 0.38)
        outer, inner = (ex + side * rx, ey - 0.6), (ex - side * rx, ey + 0.3)
        upper = _bezier(outer, (ex, ey - 2 * ry), inner, 16)
        lower = _bezier(inner, (ex, ey + 1.5 * ry), outer, 16)
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
        liner = (45, 32, 36) if ident.makeup else _scale(skin, 0.38)
        cv.line(upper, 1.5 if ident.makeup else 0.9, liner)
        cv.line(lower, 0.5, _scale(skin, 0.65), 0.7)
        if ident.bags:
            cv.line(_bezier((ex - side * rx * 0.7, ey + ry + 1.5), (ex, ey + ry + 5.5), (ex + side * rx * 0.9, ey + ry + 1.0)),
                    1.0, _scale(skin, 0.72), 0.45)
        # Eyebrow: thick at the inner end, tapering outwards, arch peak toward the outer end.
        by = ey - ident.brow_gap
        b_in, b_out = (ex - side * rx * 0.9, by + 1.0), (ex + side * rx * 1.3, by + 2.0)
        ctrl = (ex + side * rx * 0.3, 2 * (by - ident.brow_arch) - (b_in[1] + b_out[1]) / 2)
        cv.line(_bezier(b_in, ctrl, b_out, 14), ident.brow_thick, ident.brow_colour, 0.92, ident.brow_thick * 0.5)


def _draw_nose(cv: _Canvas, ident: Identity, im: ImageParams, geo: _Geo):
    skin = ident.skin
    nx, ny = geo.nose
    w = ident.nose_w
    shade = _scale(skin, 0.6)
    side = 1 if im.yaw < 0 else -1  # draw the bridge line on the side turned away
    bridge = _bezier((CX + 4.0 * im.yaw + side * 4.5, ident.eye_y + 3), (nx + side * w * 0.5, ny - 10),
                     (nx + side * w * 0.85, ny - 5), 10)
    cv.line(bridge, 1.1, shade, 0.35)
    cv.blend([_ellipse(nx, ny - 3.5, w * 0.45, 2.2, 14)], _scale(skin, 1.12), 0.3)  # tip highlight
    base = _bezier((nx - w, ny - 2.5), (nx, ny + 2.5), (nx + w, ny - 2.5), 14)  # passes through the tip (nx, ny)
    cv.line(base, 1.0, shade, 0.6)
    for s in (-1, 1):
        cv.fill(_ellipse(nx + s * w * 0.48, ny - 0.9, 1.7, 0.95, 12), _scale(skin, 0.35))
        cv.line(_ellipse(nx + s * w, ny - 3.5, 2.0, 2.6, 10, *_outer_arc(s)), 0.8, shade, 0.5)  # alar wing


def _draw_mouth(cv: _Canvas, ident: Identity, im: ImageParams, geo: _Geo):
    (lx, ly), (rx, ry), mx = geo.mouth_l, geo.mouth_r, geo.mouth_x
    mid = ident.mouth_y + 1.5 * im.smile
    o = im.mouth_open

    def curve(centre_y, n=17):
        # Quadratic through both corners with its middle at centre_y.
        return _bezier((lx, ly), (mx, 2 * centre_y - (ly + ry) / 2), (rx, ry), n)

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
    cv.fill(np.vstack([upper_out, upper_in[::-1]]), _scale(ident.lip_colour, 0.92))
    cv.fill(np.vstack([lower_in, lower_out[::-1]]), ident.lip_colour)
    cv.line(upper_in if o == 0 else lower_in, 0.8, _scale(ident.lip_colour, 0.45), 0.8)
    if ident.mustache:
        top = upper_out + (0, -0.6)
        ny = geo.nose[1]
        thick = np.clip(top[:, 1] - (ny + 2.2), 2.0, 5.5)
        band = np.vstack([(lx - 2.5, ly + 1.5), top, (rx + 2.5, ry + 1.5), (top - np.stack([0 * thick, thick], 1))[::-1]])
        cv.blend([band], ident.beard_colour, 0.92)


def _draw_hair(cv: _Canvas, ident: Identity, hair, front: bool):
    back, cap, locks, bangs, strands, _ = hair
    col = ident.hair_colour
    if not front:
        if not ident.bald:
            cv.fill(back, _scale(col, 0.82))
        return
    if ident.bald:
        if not ident.young:  # the horseshoe of hair that stays
            for s in (-1, 1):
                x0 = CX + s * (ident.face_w + 1.5)
                cv.blend([_ellipse(x0, ident.eye_y - 2, 3.5, 12, 16)], col, 0.85, density=0.7)
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
        cv.blend(group, _scale(col, k), 0.3)


def _draw_hat(cv: _Canvas, ident: Identity, im: ImageParams):
    y = ident.hairline_y + im.hat_drop
    w = ident.face_w + ident.hair_vol + 3
    crown = np.vstack([_ellipse(CX, y, w, im.hat_height, 30, math.pi, 2 * math.pi), [(CX + w, y + 2), (CX - w, y + 2)]])
    cv.fill(crown, im.hat_colour)
    cv.fill(_ellipse(CX, y + 1, w + 12, 5.0, 30), _scale(im.hat_colour, 0.8))
    cv.line(_ellipse(CX, y - 6, w * 0.99, 3.0, 24, 0, math.pi), 3.0, _scale(im.hat_colour, 0.55), 0.8)


def _draw_glasses(cv: _Canvas, ident: Identity, geo: _Geo):
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
    bridge = _bezier((lx + ident.eye_rx + gx - 0.5, ly - 1), ((lx + rx) / 2, (ly + ry) / 2 - 5), (rx - ident.eye_rx - gx + 0.5, ry - 1), 10)
    cv.line(bridge, fw, ident.glasses_colour)


def render(ident: Identity, im: ImageParams, clean: bool = False) -> tuple[Image.Image, np.ndarray]:
    """Draws one 178x218 RGB face. Returns (image, landmarks) with landmarks a (5, 2) float array
    of pixel coordinates: left eye, right eye, nose tip, left and right mouth corner (pupil centres
    and the drawn tip / corner points). clean=True skips blur, lighting and pixel noise."""
    rng = np.random.default_rng(im.texture_seed)
    geo = _Geo(ident, im)
    cv = _Canvas(_background(rng), im, rng)
    _background_shapes(cv, rng)
    hair = _hair_geometry(ident)
    _draw_hair(cv, ident, hair, front=False)
    _draw_body(cv, ident, im, geo)
    _draw_skin(cv, ident, im, geo)
    _draw_facial_hair(cv, ident, im, geo)
    _draw_eyes(cv, ident, im, geo)
    _draw_nose(cv, ident, im, geo)
    _draw_mouth(cv, ident, im, geo)
    _draw_hair(cv, ident, hair, front=True)
    if im.hat:
        _draw_hat(cv, ident, im)
    if im.glasses:
        _draw_glasses(cv, ident, geo)
    img = cv.img.reduce(SS)
    landmarks = cv.pose(geo.landmarks)
    if clean:
        return img, landmarks
    if im.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(im.blur))
    # Directional light gradient, exposure and sensor noise, all in one float pass.
    light = im.exposure * (1 + im.light_strength * (math.cos(im.light_angle) * _LX + math.sin(im.light_angle) * _LY))
    oy, ox = rng.integers(0, 64, 2)  # a random crop of a fixed noise bank: same statistics, much cheaper
    noise = _NOISE[oy:oy + HEIGHT, ox:ox + WIDTH] * np.float32(im.noise * (1 if rng.random() < 0.5 else -1))
    arr = np.asarray(img, np.float32) * light[..., None].astype(np.float32) + noise
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8)), landmarks
