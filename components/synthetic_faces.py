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
    skin = np.array([248, 218, 198]) * (1 - t) + np.array([105, 70, 50]) * t
    skin = _jitter(rng, skin + np.array([4, -2, -4]) * g, 5)
    face_w_mean = 45.0 + 2.2 * g
    face_w = float(rng.normal(face_w_mean, 2.6))
    chubby = face_w > face_w_mean + CHUBBY_Z * 2.6
    jaw_n = _clip(rng, 2.25 + 0.75 * g, 0.35, 1.8, 4.0)
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
    lipstick = bool(rng.random() < (0.015 if male else 0.58))
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
    hair_len = lengths[rng.choice(3, p=[0.72, 0.22, 0.06] if male else [0.1, 0.22, 0.68])]
    wave_u = rng.random()
    wavy, straight = bool(wave_u < 0.3), bool(wave_u > 0.55)
    hair_wave = float(rng.uniform(2.2, 3.8) if wavy else (0.0 if straight else 1.0))
    bangs = (not bald) and bool(rng.random() < (0.1 if male else 0.24))
    receding = (not bald) and bool(rng.random() < (0.35 if male and not young else 0.06 if male else 0.02))
    hairline_y = eye_y - rng.normal(45.0, 2.5) - (8.0 if receding else 0.0)
    sideburns = male and hair_len != "long" and not bald and bool(rng.random() < 0.15)
    beard = male and bool(rng.random() < 0.2)
    goatee = male and not beard and bool(rng.random() < 0.12)
    mustache = male and bool(rng.random() < (0.6 if beard else 0.18))
    stubble = male and not beard and bool(rng.random() < 0.35)
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
        brow_thick=_clip(rng, 2.2 + 1.0 * g, 0.55, 1.2, 4.6), brow_arch=_clip(rng, 2.3 - 0.9 * g, 0.8, 0.0, 4.2),
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

def _bezier(p0, c, p2, n=14):
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, c, p2 = (np.asarray(v, float) for v in (p0, c, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t**2 * p2


def _ellipse(cx, cy, rx, ry, n=28, a0=0.0, a1=2 * math.pi):
    a = np.linspace(a0, a1, n, endpoint=abs(a1 - a0 - 2 * math.pi) > 1e-9)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


def _stroke(pts, w0, w1=None, closed=False):
    """Polygon of a polyline with width tapering linearly from w0 to w1."""
    pts = np.asarray(pts, float)
    if closed:
        pts = np.vstack([pts, pts[:1]])
    d = np.gradient(pts, axis=0)
    nrm = np.stack([-d[:, 1], d[:, 0]], 1) / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-9)
    w = np.linspace(w0, w0 if w1 is None else w1, len(pts))[:, None] / 2
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

    def __init__(self, ident: Identity, im: ImageParams):
        self.outline = _outline_xy(ident, np.linspace(0, 2 * math.pi, 96, endpoint=False))
        right = _outline_xy(ident, np.linspace(-math.pi / 2, math.pi / 2, 61))
        self._hw_y, self._hw_x = right[:, 1], right[:, 0] - CX
        yaw = im.yaw
        self.eyes = [(CX - ident.eye_half + 3.0 * yaw, ident.eye_y), (CX + ident.eye_half + 3.0 * yaw, ident.eye_y)]
        self.nose = (CX + 7.0 * yaw, ident.eye_y + ident.nose_len)
        mx = CX + 3.5 * yaw
        half = ident.mouth_w / 2 * (1 + 0.08 * im.smile)
        cy = ident.mouth_y - 3.0 * im.smile
        self.mouth_l, self.mouth_r, self.mouth_x = (mx - half, cy), (mx + half, cy), mx
        self.mouth_half = half
        self.landmarks = np.array([self.eyes[0], self.eyes[1], self.nose, self.mouth_l, self.mouth_r])

    def hw(self, y):
        """Half width of the face outline at height y (0 above the forehead / below the chin)."""
        return np.interp(y, self._hw_y, self._hw_x, left=0.0, right=0.0)


# ---------------------------------------------------------------- canvas

_GY, _GX = np.mgrid[0:HEIGHT * SS, 0:WIDTH * SS].astype(np.float32)
_GX = _GX / (WIDTH * SS) * 2 - 1
_GY = _GY / (HEIGHT * SS) * 2 - 1
_LY, _LX = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
_LX = (_LX - WIDTH / 2) / (WIDTH / 2)
_LY = (_LY - HEIGHT / 2) / (HEIGHT / 2)


def _rgb(colour):
    return tuple(int(round(min(255.0, max(0.0, v)))) for v in colour)


def _scale(colour, k):
    return tuple(v * k for v in colour)


class _Canvas:
    """A supersampled RGB image whose drawing calls take canonical-frame points."""

    def __init__(self, bg: np.ndarray, im: ImageParams, rng: np.random.Generator):
        self.img = Image.fromarray(bg)
        self.draw = ImageDraw.Draw(self.img)
        self.rng = rng
        a = math.radians(im.roll_deg)
        self._m = im.scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        self._t = POSE_CENTRE + np.array([im.tx, im.ty])

    def pose(self, pts):
        """Canonical frame -> output-image pixel coordinates (the landmark transform)."""
        return (np.asarray(pts, float) - POSE_CENTRE) @ self._m.T + self._t

    def _xy(self, pts):
        # A 1x pixel index l covers supersampled pixels SS*l .. SS*l+SS-1, centred at SS*l+(SS-1)/2.
        return self.pose(pts) * SS + (SS - 1) / 2

    def fill(self, pts, colour):
        self.draw.polygon(self._xy(pts).ravel().tolist(), fill=_rgb(colour))

    def blend(self, polys, colour, alpha, density=None):
        """Alpha-blends polygons; with density, only a random fraction of pixels (hair texture)."""
        qs = [self._xy(p) for p in polys]
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


def _background(rng: np.random.Generator) -> np.ndarray:
    c1, c2 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    a = rng.uniform(0, 2 * math.pi)
    t = np.clip(0.5 + 0.5 * (math.cos(a) * _GX + math.sin(a) * _GY), 0, 1)[..., None]
    return (c1 + (c2 - c1) * t).astype(np.uint8)


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
