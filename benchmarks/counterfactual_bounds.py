"""What hiding gender (or age) can reach on the SYNTHETIC data while every person stays the same person.

    python benchmarks/counterfactual_bounds.py --work-dir outputs [--people 200] [--photos 8]
        [--parts all shape hair adornments shape+hair ...] [--attribute Male|Young]

The synthetic generator knows which of a person's traits their gender decides. For each of
`--people` new people (drawn as the data's are; no network has seen them) and each of their
`--photos` photos, this draws the SAME photo of the SAME person as the other gender
(components/synthetic/counterfactual.py: every gender-linked trait moved to the other gender's
distribution at the person's own quantile, facial hair, make-up and hair length redrawn by
coupling, everything else kept), aligned and made gray as the pipeline does. `--parts` changes
only some groups of the gender-linked traits (face shape and skin; hair; facial hair, make-up and
jewellery), one figure per set. `--attribute Young` draws the person at the other age instead
(other_age: the age lines, gray hair, baldness, hairline, bags; the photo keeps its glasses) and
judges with the run's Young judges (a run whose policy has Young, e.g. --policy gender-age).

A PERFECT gender sanitizer, whose output shows a gender drawn at random for each photo (as the
product's sanitizer draws its target) and changes nothing else, returns the counterfactual when
the draw differs from the truth and the photo when it does not. Judged by the judges of a finished
pipeline run (`--work-dir`), with 95% intervals (people resampled):

- each gender judge's error on the originals, on those outputs, and how often it reads a
  counterfactual as its new gender (how well the swap works on that judge);
- each matcher judge's TMR at FMR 1e-2 of the outputs (and of the counterfactuals alone) against
  the originals of the person's other photos, beside the originals against each other;
- the SSIM of the outputs against the photos.

If the judges read the counterfactuals as the other gender while the matchers lose more than the
[quality] target (10 points of TMR) on these outputs, no sanitizer can meet both targets on this
data by showing the other gender: what the matchers use to tell people apart includes the gender's
own cues (hair length, facial hair, jaw), and a face that changes them is, to a matcher, somewhat
somebody else.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.deidentify_bounds import aligned_gray  # noqa: E402
from components.evaluation.intervals import PairScores, pair_samples, rate_interval  # noqa: E402
from components.synthetic import people  # noqa: E402
from components.synthetic.celeba_layout import MALE_FRACTION  # noqa: E402
from components.synthetic.counterfactual import PARTS, other_age, other_gender  # noqa: E402


def draw_faces(count: int, photos: int, image_size: int, seed: int, part_sets: list, attribute: str = "Male") -> dict:
    """{original [N,S,S,1], flipped {part set: [N,S,S,1]}, identity, truth, target [N]}: `photos`
    photos of each of `count` new people, each drawn as the person and as their counterfactual
    (the other gender for each set of parts, or the other age), and a random target each."""
    rng = np.random.default_rng(seed)
    original, identity, truth = [], [], []
    flipped = {parts: [] for parts in part_sets}
    started = time.monotonic()
    for person_id in range(count):
        person = people.sample_identity(rng, bool(rng.random() < MALE_FRACTION))
        # One generator per person for its counterfactuals: every set of parts gets the same draws.
        others = {parts: (other_gender(person, np.random.default_rng([seed, person_id]), parts) if attribute == "Male"
                          else other_age(person, np.random.default_rng([seed, person_id])))
                  for parts in part_sets}
        for _ in range(photos):
            shot = people.sample_image(rng, person)
            original.append(aligned_gray(person, shot, image_size))
            for parts, other in others.items():
                flipped[parts].append(aligned_gray(other, shot, image_size))
            identity.append(person_id)
            truth.append(int(person.male if attribute == "Male" else person.young))
        if (person_id + 1) % 50 == 0:
            print(f"  drawn {person_id + 1}/{count} people ({time.monotonic() - started:.0f} s)", flush=True)
    truth = np.asarray(truth)
    target = (rng.random(len(truth)) < 0.5).astype(int)  # the value each output shows, independent of the truth
    return {"original": np.stack(original), "flipped": {parts: np.stack(faces) for parts, faces in flipped.items()},
            "identity": np.asarray(identity), "truth": truth, "target": target}


def _rate(values, identity) -> str:
    low, high = rate_interval(np.asarray(values, float), identity)
    return f"{np.mean(values):.1%} [{low:.1%}-{high:.1%}]"


def _tmr(scores, identity) -> str:
    pairs = PairScores(scores, identity)
    value = pairs.tmr_at_fmr(1e-2)
    low, high = pairs.tmr_intervals((1e-2,), samples=pair_samples(pairs.pairs_walked, 1000))[1e-2]
    return f"{value:.1%} [{low:.1%}-{high:.1%}]"


def judge(work_dir: str, faces: dict, attribute: str = "Male") -> None:
    from ml_metadata import metadata_store
    from tfx import v1 as tfx

    from components.evaluation.judges import load_synthetic_judges
    from pipelines.san_effect import latest_uri

    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(work_dir, "metadata.sqlite")))
    judges = load_synthetic_judges(latest_uri(store, "Model", "JudgeTrainer"))
    if attribute == "Male":
        attribute_judges = judges.gender
    elif attribute in judges.attributes:
        attribute_judges = judges.attributes[attribute]["judges"]
    else:
        raise SystemExit(f"--work-dir {work_dir}: its JudgeTrainer trained no {attribute} judges (it trains them for the "
                         f"attributes of its policy): use the work dir of a run with --policy gender-age or age")
    identity, truth, target = faces["identity"], faces["truth"], faces["target"]
    swapped = target != truth
    print(f"\n{work_dir}'s judges; {len(truth)} SYNTHETIC faces of {len(set(identity.tolist()))} new people "
          f"({truth.mean():.1%} {attribute}), {swapped.mean():.1%} of them drawn with the other value by the draw")
    original = faces["original"]
    print(f"\n{attribute} judge | error on originals")
    for attribute_judge in attribute_judges:
        print(f"{attribute_judge.name} | {_rate((attribute_judge.male_probability(original) >= 0.5) != truth, identity)}")
    galleries = {matcher.name: matcher.embed(original) for matcher in judges.matcher}
    print("\nmatcher judge | TMR at FMR 1e-2, originals against originals")
    for matcher in judges.matcher:
        print(f"{matcher.name} | {_tmr(matcher.similarity(galleries[matcher.name], galleries[matcher.name]), identity)}")
    for parts, flipped in faces["flipped"].items():
        outputs = np.where(swapped[:, None, None, None], flipped, original)
        ssim = tf.image.ssim(tf.constant(original), tf.constant(outputs), 1.0).numpy()
        low, high = rate_interval(ssim, identity)
        ssim_flipped = float(tf.reduce_mean(tf.image.ssim(tf.constant(original), tf.constant(flipped), 1.0)))
        what = f"the gender's {' + '.join(parts)}" if attribute == "Male" else "the age"
        print(f"\n== {what} changed: SSIM of the perfect sanitizer's outputs "
              f"{ssim.mean():.3f} [{low:.3f}-{high:.3f}] (counterfactuals alone {ssim_flipped:.3f})")
        print(f"{attribute} judge | error on the perfect sanitizer's outputs | counterfactuals read as their new value")
        for attribute_judge in attribute_judges:
            read_output = attribute_judge.male_probability(outputs) >= 0.5
            read_flipped = attribute_judge.male_probability(flipped) >= 0.5
            print(f"{attribute_judge.name} | {_rate(read_output != truth, identity)} | "
                  f"{_rate(read_flipped == (1 - truth), identity)}")
        print("matcher judge | TMR at FMR 1e-2 against the originals: outputs | counterfactuals alone")
        for matcher in judges.matcher:
            gallery = galleries[matcher.name]
            rows = [_tmr(matcher.similarity(matcher.embed(probes), gallery), identity) for probes in (outputs, flipped)]
            print(f"{matcher.name} | " + " | ".join(rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", required=True, help="a finished pipeline run (its JudgeTrainer's judges)")
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--photos", type=int, default=8, help="photos per person (at least 2)")
    parser.add_argument("--image-size", type=int, default=64, help="the run's image size")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--parts", nargs="+", default=["all"],
                        help=f"which gender-linked traits change, one set per figure: all, or any of "
                             f"{', '.join(PARTS)} joined by + (e.g. shape+adornments)")
    parser.add_argument("--attribute", choices=("Male", "Young"), default="Male",
                        help="the attribute flipped: Male (gender; --parts apply) or Young (age)")
    args = parser.parse_args(argv)
    if args.attribute != "Male" and args.parts != ["all"]:
        raise SystemExit("--parts: only for --attribute Male (the age counterfactual changes all its traits)")
    part_sets = []
    for text in args.parts:
        parts = tuple(PARTS) if text == "all" else tuple(text.split("+"))
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            raise SystemExit(f"--parts {text}: unknown {', '.join(unknown)}; use all or {', '.join(PARTS)} joined by +")
        part_sets.append(parts)
    if args.people < 2 or args.photos < 2:
        raise SystemExit("--people and --photos: at least 2 each (TMR needs genuine and impostor pairs)")
    if not os.path.exists(os.path.join(args.work_dir, "metadata.sqlite")):
        raise SystemExit(f"--work-dir {args.work_dir}: no metadata.sqlite there; give the --work-dir of a finished "
                         "`python -m pipelines.run` (its outputs folder)")
    print(f"drawing {args.people} SYNTHETIC people x {args.photos} photos, each also with the other {args.attribute}")
    faces = draw_faces(args.people, args.photos, args.image_size, args.seed, part_sets, args.attribute)
    judge(args.work_dir, faces, args.attribute)
    return 0


if __name__ == "__main__":
    sys.exit(main())
