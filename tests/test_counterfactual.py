"""The gender counterfactual of a synthetic person (components/synthetic/counterfactual.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from components.synthetic import drawing, people
from components.synthetic.counterfactual import PARTS, couple, other_age, other_gender

# Traits the gender does not decide: a counterfactual keeps them exactly.
KEPT = ("young", "eye_y", "eye_half", "eye_rx", "eye_ry", "iris", "brow_gap", "chubby", "double_chin", "mouth_y",
        "hair_wave", "wavy", "straight", "glasses_wearer", "glasses_colour", "glasses_round", "glasses_gap",
        "glasses_width", "glasses_tint", "bags", "hair_seed", "shadow_colour", "earring_colour")


def test_couple_keeps_what_both_distributions_allow_and_moves_to_the_target_distribution():
    rng = np.random.default_rng(3)
    options = ("short", "medium", "long")
    p, q = (0.76, 0.2, 0.04), (0.08, 0.2, 0.72)
    drawn = rng.choice(3, 20000, p=p)
    moved = np.array([options.index(couple(rng, options[i], options, p, q)) for i in drawn])
    np.testing.assert_allclose(np.bincount(moved, minlength=3) / len(moved), q, atol=0.015)
    assert np.all(moved[drawn == 1] == 1)  # medium is as likely under both: kept
    assert np.all(moved[drawn == 2] == 2)  # long is likelier under q: kept
    # What moves, moves only to where q has more than p.
    assert set(moved[drawn != moved].tolist()) <= {2}
    with pytest.raises(ValueError, match="probability 0"):
        couple(rng, "x", ("x", "y"), (0.0, 1.0), (0.5, 0.5))


@pytest.mark.parametrize("male", [False, True])
def test_flipped_people_are_distributed_as_the_other_gender_drawn_directly(male):
    """The counterfactual restates sample_identity's shifts: flipped women must look, trait by
    trait, like men drawn by sample_identity (and flipped men like women); a drift of either
    shows here."""
    rng = np.random.default_rng(11)
    n = 3000
    flipped = [other_gender(people.sample_identity(rng, male), rng) for _ in range(n)]
    direct = [people.sample_identity(rng, not male) for _ in range(n)]
    assert all(person.male is (not male) for person in flipped)
    _assert_distributed_alike(flipped, direct)


def _assert_distributed_alike(flipped: list, direct: list, skip: tuple = ()) -> None:
    """Trait by trait: category and flag shares within 3 points, means within 0.12 standard deviations."""
    for field in dataclasses.fields(people.Identity):
        if field.name in skip:
            continue
        a, b = ([getattr(person, field.name) for person in group] for group in (flipped, direct))
        if isinstance(b[0], str):
            for value in set(a) | set(b):
                share_a, share_b = np.mean([x == value for x in a]), np.mean([x == value for x in b])
                assert abs(share_a - share_b) < 0.03, (field.name, value, share_a, share_b)
        elif isinstance(b[0], bool):
            assert abs(np.mean(a) - np.mean(b)) < 0.03, (field.name, np.mean(a), np.mean(b))
        else:
            a, b = np.asarray(a, float), np.asarray(b, float)
            spread = np.maximum(b.std(axis=0), 1e-9)
            gap = np.max(np.abs(a.mean(axis=0) - b.mean(axis=0)) / spread)
            assert gap < 0.12, (field.name, a.mean(axis=0), b.mean(axis=0))


def test_the_same_person_keeps_what_gender_does_not_decide_and_loses_the_cues_it_does():
    rng = np.random.default_rng(5)
    for _ in range(200):
        person = people.sample_identity(rng, bool(rng.random() < 0.5))
        other = other_gender(person, rng)
        for name in KEPT:
            assert getattr(other, name) == getattr(person, name), name
        assert other.face_w == pytest.approx(person.face_w + (3.0 if other.male else -3.0))
        if not other.male:
            assert not (other.beard or other.goatee or other.mustache or other.stubble or other.bald or other.sideburns)
        else:
            assert not other.makeup
    # The drawing takes it: a counterfactual renders like any person.
    person = people.sample_identity(rng, True)
    shot = people.sample_image(rng, person)
    original, _ = drawing.render(person, shot)
    flipped, _ = drawing.render(other_gender(person, rng), shot)
    assert original.size == flipped.size
    assert np.abs(np.asarray(original, float) - np.asarray(flipped, float)).mean() > 1.0


def test_a_partial_counterfactual_changes_only_its_part_and_agrees_with_the_full_one():
    rng = np.random.default_rng(9)
    changed = {part: set() for part in PARTS}
    for index in range(300):
        person = people.sample_identity(rng, bool(rng.random() < 0.5))
        full = other_gender(person, np.random.default_rng([1, index]))
        for part, names in PARTS.items():
            partial = other_gender(person, np.random.default_rng([1, index]), (part,))
            assert partial.male is full.male is (not person.male)
            for field in dataclasses.fields(people.Identity):
                value = getattr(partial, field.name)
                if field.name in names:
                    assert value == getattr(full, field.name), (part, field.name)
                    if value != getattr(person, field.name):
                        changed[part].add(field.name)
                elif field.name != "male":
                    assert value == getattr(person, field.name), (part, field.name)
    # Each part's traits do change for some people (none of the groups is dead).
    assert all(len(names) >= 5 for names in changed.values()), changed
    with pytest.raises(ValueError, match="unknown counterfactual parts beard"):
        other_gender(person, rng, ("shape", "beard"))


def _people_of(rng, young: bool, count: int) -> list:
    found = []
    while len(found) < count:
        person = people.sample_identity(rng, bool(rng.random() < 0.42))
        if person.young is young:
            found.append(person)
    return found


@pytest.mark.parametrize("young", [False, True])
def test_people_drawn_at_the_other_age_are_distributed_as_that_age(young):
    """other_age restates sample_identity's age dependence (baldness, gray hair, hairline, bags):
    flipped people must look, trait by trait, like people of that age drawn directly; only
    glasses_wearer differs (a photo keeps its glasses, so the counterfactual keeps the trait)."""
    rng = np.random.default_rng(21)
    flipped = [other_age(person, rng) for person in _people_of(rng, young, 2500)]
    direct = _people_of(rng, not young, 2500)
    assert all(person.young is (not young) for person in flipped)
    _assert_distributed_alike(flipped, direct, skip=("glasses_wearer",))


def test_the_other_age_keeps_the_gender_and_the_face():
    rng = np.random.default_rng(4)
    age_linked = {"young", "hair_kind", "hair_colour", "brow_colour", "bald", "bangs", "receding", "sideburns",
                  "hairline_y", "bags", "beard_colour"}
    for _ in range(300):
        person = people.sample_identity(rng, bool(rng.random() < 0.5))
        other = other_age(person, rng)
        assert other.young is (not person.young)
        for field in dataclasses.fields(people.Identity):
            if field.name not in age_linked:
                assert getattr(other, field.name) == getattr(person, field.name), field.name
        assert not (other.bald and not other.male)
