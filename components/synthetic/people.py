"""What a synthetic person and one photo of them are: the identity and per-image parameters of the
procedural faces, how they are drawn at random, and the CelebA attributes a drawing shows.

Lengths are pixels of the canonical 178x218 face frame (eyes near CelebA's aligned positions, y
pointing down) that geometry.py builds every shape in.

Gender is carried by several overlapping cues (jaw shape, face size, brow thickness, hair length,
facial hair, lipstick/makeup, neck width); none of them decides it alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT = 178, 218  # output image size (CelebA aligned)
EYE_Y = 111.0  # canonical eye line (CelebA aligned: left eye ~(69,111), right eye ~(108,111))

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


def stream_rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """The generator of one draw of the synthetic data: (seed, stream, index) keeps every
    identity's and every image's draws independent of the others' (and of the process that makes them)."""
    return np.random.default_rng([seed, stream, index])


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
