"""The same synthetic person drawn with their gender (or age) flipped: counterfactuals for bounds.

`other_gender(identity, rng)` returns the Identity that `people.sample_identity` would have drawn
for this person had they been of the other gender, keeping everything the gender does not decide:

- every continuous trait whose mean the gender shifts (face width and height, jaw, chin, nose,
  lips, brows, mouth width, hair volume, neck, skin tone) moves by that shift, so the person keeps
  their place (z-score) within the other gender's distribution (clipped where the draw is clipped);
- every discrete trait whose probability the gender changes (lipstick, make-up, hair length,
  bangs, receding hairline, baldness, blond hair, facial hair, sideburns, earrings, necklace,
  necktie, rosy cheeks) is redrawn by maximal coupling: the value stays whenever the other gender's
  distribution allows it to (with probability min(1, q/p)), otherwise it is drawn from what the
  other gender has more of. Traits only one gender has (facial hair, baldness, make-up) are drawn
  afresh for a man and removed for a woman;
- every other trait (eyes, iris, brow gap, hair colour and wave, glasses, age, skin lightness,
  the hair's random shape) stays.

`other_gender(..., parts=...)` changes only some groups of those traits (PARTS: shape, hair,
adornments); `other_age` flips CelebA's Young the same way.

No network sees these faces in training: they exist to measure what a PERFECT sanitizer, one whose
output shows the other gender (or age) and nothing else changed, would do to the judges
(benchmarks/counterfactual_bounds.py). The shifts restate sample_identity's; the tests
(tests/test_counterfactual.py) check that flipped women are distributed as men drawn directly, and
so on for each direction and for age.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from components.synthetic import people

# (field, shift from female to male, clip low, clip high) as in people.sample_identity.
_SHIFTED = (
    ("face_w", 3.0, -math.inf, math.inf),
    ("face_top", 1.5, 60.0, 80.0),
    ("face_chin", 2.0, 58.0, 78.0),
    ("jaw_n", 0.9, 1.8, 4.0),
    ("chin_taper", -0.08, 0.0, 0.42),
    ("chin_y", 2.5, -math.inf, math.inf),
    ("nose_len", 1.2, -math.inf, math.inf),
    ("nose_w", 0.8, -math.inf, math.inf),
    ("lip_top", -0.4, 1.4, 4.5),
    ("lip_bot", -0.5, 1.8, 5.5),
    ("brow_thick", 1.2, 1.2, 4.6),
    ("brow_arch", -0.9, 0.0, 4.2),
    ("mouth_w", 1.5, 25.0, 40.0),
    ("hair_vol", -2.0, 2.0, 14.0),
)
_SKIN_SHIFT = np.array([4.0, -2.0, -4.0])  # male minus female, besides a step along the light..dark continuum:
_SKIN_T_SHIFT = 0.04
_SKIN_STOPS = ((246, 208, 100), (216, 152, 66), (194, 118, 46))  # per channel at t = 0, 0.5, 1
_NECK_RATIO_SHIFT = 0.08
_NOSE_Z_SHIFT = 0.5
_HAIR_LENGTHS = ("short", "medium", "long")
_HAIR_LENGTH_P = {True: (0.76, 0.2, 0.04), False: (0.08, 0.2, 0.72)}
_HAIR_KINDS = ("black", "brown", "blond", "gray", "red")
# P(trait) for (male, female) of the traits both genders can have.
_BOTH = {"lipstick": (0.015, 0.62), "rosy": (0.03, 0.12), "earrings": (0.03, 0.35), "necklace": (0.02, 0.2),
         "necktie": (0.12, 0.01)}


def _hair_kind_p(male: bool, young: bool) -> np.ndarray:
    p = np.array([0.36, 0.36, 0.09 if male else 0.24, 0.0 if young else 0.45, 0.05])
    if young:
        p[3] = 0.015
    return p / p.sum()


def couple(rng: np.random.Generator, value, options, p, q):
    """Maximal coupling: `value` (drawn from `options` with probabilities p) moved to a draw from q,
    keeping it whenever q allows (probability min(1, q/p)), else drawing from (q - p)+."""
    p, q = np.asarray(p, float) / np.sum(p), np.asarray(q, float) / np.sum(q)
    at = list(options).index(value)
    if p[at] <= 0:
        raise ValueError(f"{value!r} has probability 0 under the distribution it is said to be drawn from")
    if rng.random() < min(1.0, q[at] / p[at]):
        return value
    excess = np.clip(q - p, 0.0, None)
    return options[int(rng.choice(len(options), p=excess / excess.sum()))]


def _couple_bool(rng, value: bool, p: float, q: float) -> bool:
    return bool(couple(rng, bool(value), (False, True), (1 - p, p), (1 - q, q)))


def _colour(values) -> tuple:
    return tuple(float(v) for v in np.clip(values, 0, 255))


def _natural_lips(skin) -> np.ndarray:
    return np.asarray(skin) * np.array([0.85, 0.58, 0.58]) + np.array([22, 0, 6])


# The gender-linked traits in three groups, for partial counterfactuals (`parts`).
PARTS = {
    "shape": ("face_w", "face_top", "face_chin", "jaw_n", "chin_taper", "chin_y", "nose_len", "nose_w", "lip_top",
              "lip_bot", "brow_thick", "brow_arch", "mouth_w", "neck_w", "oval", "big_nose", "skin", "pale"),
    "hair": ("hair_len", "hair_kind", "hair_colour", "brow_colour", "hair_vol", "bald", "bangs", "receding",
             "hairline_y"),
    "adornments": ("beard", "goatee", "mustache", "stubble", "sideburns", "beard_colour", "lipstick", "lip_colour",
                   "makeup", "earrings", "necklace", "necktie", "rosy"),
}


def _rebased_hair(ident: people.Identity, hair_kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(hair colour, brow colour) of `ident` with its hair of kind `hair_kind`: the base colour
    changed, the person's own jitter kept."""
    hair_colour, brow_colour = np.asarray(ident.hair_colour), np.asarray(ident.brow_colour)
    if hair_kind == ident.hair_kind:
        return hair_colour, brow_colour
    new_hair = np.clip(hair_colour + np.asarray(people.HAIR_COLOURS[hair_kind])
                       - np.asarray(people.HAIR_COLOURS[ident.hair_kind]), 0, 255)

    def brow_base(kind, hair):
        return hair * (0.55 if kind in ("blond", "gray") else 0.8)

    return new_hair, brow_colour + brow_base(hair_kind, new_hair) - brow_base(ident.hair_kind, hair_colour)


def _beard_colour(rng: np.random.Generator, bald: bool, hair_colour: np.ndarray) -> tuple:
    """As sample_identity draws it: a bald man's from a dark or gray base, anyone else's from the hair."""
    if bald:
        choice = ["black", "brown", "gray"][rng.integers(3)]
        return _colour(np.asarray(people.HAIR_COLOURS[choice]) + rng.normal(0, 8, 3))
    return _colour(hair_colour * 0.8)


def _hairline(ident: people.Identity, receding: bool) -> float:
    """The person's hairline with a receding one drawn 8 px higher, as sample_identity draws it."""
    return ident.hairline_y + (8.0 if ident.receding else 0.0) - (8.0 if receding else 0.0)


def other_gender(ident: people.Identity, rng: np.random.Generator, parts=tuple(PARTS)) -> people.Identity:
    """The person of `ident` drawn as the other gender (see the module's docstring); with `parts` a
    subset of PARTS, only those groups of traits change (the draws are the same either way, so the
    partial counterfactuals of one person agree with the full one on what they change)."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown counterfactual parts {', '.join(unknown)}: use any of {', '.join(PARTS)}")
    male, young = not ident.male, ident.young
    step = 1.0 if male else -1.0  # the gender's shift is added going female -> male
    changes = {"male": male}
    for name, shift, low, high in _SHIFTED:
        changes[name] = float(np.clip(getattr(ident, name) + step * shift, low, high))
    changes["oval"] = bool(changes["jaw_n"] < 2.35 and 0.16 < changes["chin_taper"] < 0.34)
    nose_z = ((ident.nose_len - 23.0 - 1.2 * ident.male) / 1.8 + (ident.nose_w - 7.0 - 0.8 * ident.male) / 0.8
              ) / math.sqrt(2) + _NOSE_Z_SHIFT * ident.male
    changes["big_nose"] = bool(nose_z + step * _NOSE_Z_SHIFT > people.BIG_NOSE)
    changes["neck_w"] = float(changes["face_w"] * (ident.neck_w / ident.face_w + step * _NECK_RATIO_SHIFT))
    # The skin's place t on the light..dark continuum, read back from its green channel (monotone
    # in t; the draw's jitter is kept), moved by the gender's step.
    t = float(np.interp(ident.skin[1] + 2.0 * ident.male, _SKIN_STOPS[1][::-1], [1.0, 0.5, 0.0]))
    moved = float(np.clip(t + step * _SKIN_T_SHIFT, 0.0, 1.0))
    along = np.array([np.interp(moved, [0, 0.5, 1], ch) - np.interp(t, [0, 0.5, 1], ch) for ch in _SKIN_STOPS])
    skin = _colour(np.asarray(ident.skin) + along + step * _SKIN_SHIFT)
    changes["skin"] = skin
    changes["pale"] = moved < 0.1
    for name, (p_male, p_female) in _BOTH.items():
        p, q = (p_female, p_male) if male else (p_male, p_female)
        changes[name] = _couple_bool(rng, getattr(ident, name), p, q)
    if changes["lipstick"] and not ident.lipstick:
        lips = np.asarray(people.LIPSTICKS[rng.integers(len(people.LIPSTICKS))]) + rng.normal(0, 10, 3)
    elif changes["lipstick"]:
        lips = np.asarray(ident.lip_colour)
    elif ident.lipstick:
        lips = _natural_lips(skin) + rng.normal(0, 6, 3)
    else:  # the same natural lips, on the shifted skin
        lips = np.asarray(ident.lip_colour) + _natural_lips(skin) - _natural_lips(ident.skin)
    changes["lip_colour"] = _colour(lips)
    changes["makeup"] = (not male) and bool(rng.random() < (0.7 if changes["lipstick"] else 0.1))

    # Hair: length and blondness coupled; baldness, bangs, hairline and facial hair follow.
    hair_len = couple(rng, ident.hair_len, _HAIR_LENGTHS, _HAIR_LENGTH_P[ident.male], _HAIR_LENGTH_P[male])
    hair_kind = couple(rng, ident.hair_kind, _HAIR_KINDS, _hair_kind_p(ident.male, young), _hair_kind_p(male, young))
    hair_colour, brow_colour = _rebased_hair(ident, hair_kind)
    bald = male and bool(rng.random() < (0.03 if young else 0.22))  # no woman is drawn bald
    p_bangs, q_bangs = (0.24, 0.1) if male else (0.1, 0.24)
    bangs = (not bald) and (_couple_bool(rng, ident.bangs, p_bangs, q_bangs) if not ident.bald
                            else bool(rng.random() < q_bangs))

    def p_receding(is_male):
        return 0.35 if is_male and not young else 0.06 if is_male else 0.02

    if ident.bald:  # a bald man's hairline was never drawn as receding or not
        receding = (not bald) and bool(rng.random() < p_receding(male))
    else:
        receding = (not bald) and _couple_bool(rng, ident.receding, p_receding(ident.male), p_receding(male))
    hairline_y = _hairline(ident, receding)
    changes.update(hair_len=hair_len, hair_kind=hair_kind, hair_colour=_colour(hair_colour),
                   brow_colour=_colour(brow_colour), bald=bald, bangs=bangs, receding=receding,
                   hairline_y=float(hairline_y))
    if male:
        beard = bool(rng.random() < 0.22)
        goatee = not beard and bool(rng.random() < 0.12)
        changes.update(beard=beard, goatee=goatee, mustache=bool(rng.random() < (0.6 if beard else 0.18)),
                       stubble=not beard and bool(rng.random() < 0.45),
                       sideburns=hair_len != "long" and not bald and bool(rng.random() < 0.15))
    else:
        changes.update(beard=False, goatee=False, mustache=False, stubble=False, sideburns=False)
    changes["beard_colour"] = _beard_colour(rng, bald, hair_colour)
    if set(changes) - {"male"} - set().union(*PARTS.values()):  # a trait changed above but in no part
        raise RuntimeError(f"counterfactual traits outside PARTS: {sorted(set(changes) - set().union(*PARTS.values()))}")
    chosen = {"male"}.union(*(PARTS[part] for part in parts))
    return dataclasses.replace(ident, **{name: value for name, value in changes.items() if name in chosen})


def other_age(ident: people.Identity, rng: np.random.Generator) -> people.Identity:
    """The person of `ident` drawn at the other age (CelebA's Young flipped): the age lines the
    drawing adds to older faces follow the flag, and the traits whose probability age changes are
    coupled as in other_gender (baldness and a receding hairline for men, gray hair, bags under
    the eyes); every other trait stays. (Glasses are drawn per photo; a photo keeps its own.)"""
    young, male = not ident.young, ident.male
    changes = {"young": young}
    hair_kind = couple(rng, ident.hair_kind, _HAIR_KINDS, _hair_kind_p(male, ident.young), _hair_kind_p(male, young))
    hair_colour, brow_colour = _rebased_hair(ident, hair_kind)
    bald = male and _couple_bool(rng, ident.bald, 0.03 if ident.young else 0.22, 0.03 if young else 0.22)
    p_bangs = 0.1 if male else 0.24
    bangs = False if bald else ident.bangs if not ident.bald else bool(rng.random() < p_bangs)

    def p_receding(is_young):
        return 0.35 if male and not is_young else 0.06 if male else 0.02

    if bald:
        receding = False
    elif ident.bald:
        receding = bool(rng.random() < p_receding(young))
    else:
        receding = _couple_bool(rng, ident.receding, p_receding(ident.young), p_receding(young))
    sideburns = (False if bald else ident.sideburns if not ident.bald
                 else male and ident.hair_len != "long" and bool(rng.random() < 0.15))
    changes.update(hair_kind=hair_kind, hair_colour=_colour(hair_colour), brow_colour=_colour(brow_colour), bald=bald,
                   bangs=bangs, receding=receding, sideburns=sideburns,
                   hairline_y=float(_hairline(ident, receding)),
                   bags=_couple_bool(rng, ident.bags, 0.12 if ident.young else 0.5, 0.12 if young else 0.5))
    if bald != ident.bald or hair_kind != ident.hair_kind:
        changes["beard_colour"] = _beard_colour(rng, bald, hair_colour)
    return dataclasses.replace(ident, **changes)
