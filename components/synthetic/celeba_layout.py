"""Deterministic embedded synthetic CelebA: writes the CelebA "aligned" layout from a seed.

CelebA itself cannot be downloaded where this project runs, so this module draws procedural faces
(people.py and drawing.py beside it) and writes them with exactly the CelebA file formats:
img_align_celeba/NNNNNN.jpg (178x218), list_attr_celeba.txt, identity_CelebA.txt,
list_eval_partition.txt and list_landmarks_align_celeba.txt, plus README.md and
synthetic_celeba.json that label the folder as SYNTHETIC.

Same arguments => byte-identical files: every random draw comes from numpy generators seeded by
(seed, stream, index), and PIL's JPEG encoder is deterministic for fixed pixels and quality.

CLI: python -m components.synthetic.celeba_layout --out DIR [--identities N] [--images-per-identity K] [--seed S]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import re
import sys
import time
from typing import Callable, Sequence

import numpy as np

from components.synthetic import people
from components.synthetic import workers as drawing_workers
from components.celeba.layout import (  # the one definition of the CelebA layout
    ATTRIBUTES_FILE, CELEBA_ATTRIBUTE_NAMES, IDENTITY_FILE, IMAGES_DIR, LANDMARK_NAMES, LANDMARKS_FILE, PARTITION_FILE,
)

METADATA_FILE = "synthetic_celeba.json"
README_FILE = "README.md"

GENERATOR = "components.synthetic.celeba_layout"
FORMAT_VERSION = 1
MALE_FRACTION = 0.42
PARTITION_NAMES = ("train", "validation", "test")
# Labels the drawing cannot show: drawn per identity from the seeded RNG with these probabilities.
RANDOM_ATTRIBUTES = {"Attractive": 0.5, "High_Cheekbones": 0.45, "Pointy_Nose": 0.28}
PER_IMAGE_ATTRIBUTES = ("Blurry", "Eyeglasses", "Mouth_Slightly_Open", "Smiling", "Wearing_Hat", "Bald")
DRAWN_ATTRIBUTES = tuple(n for n in CELEBA_ATTRIBUTE_NAMES if n not in RANDOM_ATTRIBUTES)

# RNG streams: (seed, stream, index) keeps identities/images independent of each other's draws.
_LAYOUT, _IDENTITY, _IMAGE = 0, 1, 2
_IMAGE_NAME = re.compile(r"^\d{6}\.jpg$")


def _partition_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Whole identities per partition; every partition with a positive fraction gets >= 1 when n >= 3."""
    counts = [int(round(f * n)) for f in fractions[1:]]
    counts.insert(0, n - sum(counts))
    if n >= 3:
        for i, f in enumerate(fractions):
            while f > 0 and counts[i] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] += 1
    while counts[0] < 0:  # rounding overshoot with tiny n: take back from the largest other split
        counts[1 + int(np.argmax(counts[1:]))] -= 1
        counts[0] += 1
    return counts


def _check_args(out_dir, num_identities, images_per_identity, seed, fractions):
    if num_identities < 1 or images_per_identity < 1:
        raise ValueError("num_identities and images_per_identity must be >= 1")
    if num_identities * images_per_identity > 999_999:
        raise ValueError("at most 999999 images fit CelebA's 6-digit file names")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"partition_fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    images = os.path.join(out_dir, IMAGES_DIR)
    if os.path.isdir(images) and os.listdir(images) and not os.path.exists(os.path.join(out_dir, METADATA_FILE)):
        # Never overwrite what may be the real CelebA (or anything else that is not ours).
        raise FileExistsError(f"{images} already holds files and {out_dir} is not a synthetic_celeba folder")


def _attribute_row(name: str, values: Sequence[int]) -> str:
    # CelebA: the file name, then every value right-aligned in a 3-character field (" -1" / "  1").
    return name + "".join(f"{v:3d}" for v in values) + "\n"


def _landmark_row(name: str, values: Sequence[int]) -> str:
    # CelebA: the file name, a space, then every coordinate right-aligned in 5 characters.
    return name + " " + "".join(f"{v:5d}" for v in values) + "\n"


def _readme(meta: dict) -> str:
    drawn = ", ".join(meta["attribute_sources"]["drawn"])
    random_ = ", ".join(f"{k} (p={v})" for k, v in RANDOM_ATTRIBUTES.items())
    per_image = ", ".join(PER_IMAGE_ATTRIBUTES)
    parts = meta["images_per_partition"]
    return f"""# SYNTHETIC data - this is NOT CelebA

Every image and label in this folder was generated procedurally by `{GENERATOR}`
(format version {FORMAT_VERSION}). No real person is depicted and no CelebA file was used.

- Seed: {meta['seed']}
- Size: {meta['num_identities']} synthetic identities x {meta['images_per_identity']} images = {meta['num_images']} images
- Regenerate byte-identically with:
  `python -m components.synthetic.celeba_layout --out DIR --identities {meta['num_identities']} --images-per-identity {meta['images_per_identity']} --seed {meta['seed']}`

The files follow the CelebA "aligned" layout and formats exactly (img_align_celeba/NNNNNN.jpg at
178x218, list_attr_celeba.txt, identity_CelebA.txt, list_eval_partition.txt,
list_landmarks_align_celeba.txt), so the same ingestion code reads both.

- Partitions (0 train / 1 validation / 2 test) hold disjoint identities; images per partition:
  {parts['train']} / {parts['validation']} / {parts['test']}.
- Male fraction of identities: {meta['male_fraction_identities']:.3f}. Gender shows through several overlapping
  cues (jaw shape, face size, brow thickness, hair length, facial hair, lipstick/makeup, neck
  width); no single cue decides it.
- Landmarks are the exact drawn positions (pupil centres, nose tip, mouth corners) after the
  per-image pose transform, rounded to whole pixels.
- Nuisance per image: pose (roll, scale, shift, small yaw), expression, lighting gradient and
  exposure, background, Gaussian noise, occasional blur, eyeglasses, hats, JPEG quality 60-95.

## Attributes

Driven by the drawing (the label matches what is drawn): {drawn}.

Of these, {per_image} can change between images of one identity (Bald because a hat hides the
head); the rest are fixed per identity. Young is drawn: every older identity (Young = -1) has
forehead lines, deep nasolabial folds, marionette lines below the mouth corners and crow's feet,
and older identities get gray hair, eye bags, receding hairlines and baldness more often.
Smiling raises the mouth corners and curves the lips (and deepens the nasolabial folds).

Random labels, not visible in the images (drawn per identity from the seeded RNG): {random_}.
"""


_CHUNK = 250  # images per task of the drawing processes (components/synthetic/workers.py)


def generate(out_dir: str, num_identities: int = 400, images_per_identity: int = 8, seed: int = 0,
             partition_fractions: Sequence[float] = (0.8, 0.1, 0.1),
             progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> dict:
    """Writes the CelebA aligned layout into out_dir (local path); returns a summary dict
    (counts per partition, male fraction, seed, ...). progress(done, total) is called every 500
    images and at the end. The images are drawn by `workers` processes (default: one per core;
    each image has its own seeded generator, so the files are the same for any number)."""
    fractions = tuple(float(f) for f in partition_fractions)
    _check_args(out_dir, num_identities, images_per_identity, seed, fractions)
    n, k = num_identities, images_per_identity
    total = n * k
    layout = people.stream_rng(seed, _LAYOUT)

    # Identity ids 1..n; gender and partition are assigned to whole identities.
    male = np.zeros(n + 1, bool)
    male[1 + layout.permutation(n)[: int(round(MALE_FRACTION * n))]] = True
    partition = np.zeros(n + 1, int)
    order = 1 + layout.permutation(n)
    counts = _partition_counts(n, fractions)
    partition[order[counts[0]:counts[0] + counts[1]]] = 1
    partition[order[counts[0] + counts[1]:]] = 2
    # Shuffled image order so identities interleave in the files, as in CelebA.
    image_identity = np.repeat(np.arange(1, n + 1), k)[layout.permutation(total)]

    identities: dict[int, tuple] = {}
    for ident_id in range(1, n + 1):
        rng = people.stream_rng(seed, _IDENTITY, ident_id)
        ident = people.sample_identity(rng, bool(male[ident_id]))
        rand = {name: bool(rng.random() < p) for name, p in RANDOM_ATTRIBUTES.items()}
        identities[ident_id] = (ident, rand)

    img_dir = os.path.join(out_dir, IMAGES_DIR)
    os.makedirs(img_dir, exist_ok=True)
    # Mark the folder as ours before writing images, so an interrupted run can simply be rerun;
    # the final metadata (complete: true) replaces this marker.
    with open(os.path.join(out_dir, METADATA_FILE), "w", encoding="ascii", newline="\n") as f:
        json.dump({"synthetic": True, "generator": GENERATOR, "complete": False}, f)
    for stale in os.listdir(img_dir):  # leftovers of an earlier, larger synthetic run
        if _IMAGE_NAME.match(stale) and int(stale[:6]) > total:
            os.remove(os.path.join(img_dir, stale))

    def open_text(name):
        return open(os.path.join(out_dir, name), "w", encoding="ascii", newline="\n")

    with open_text(ATTRIBUTES_FILE) as f_attr, open_text(IDENTITY_FILE) as f_id, \
            open_text(PARTITION_FILE) as f_part, open_text(LANDMARKS_FILE) as f_lm:
        f_attr.write(f"{total}\n" + " ".join(CELEBA_ATTRIBUTE_NAMES) + " \n")  # CelebA has the trailing space
        f_lm.write(f"{total}\n" + " ".join(LANDMARK_NAMES) + "\n")
        state = {"seed": seed, "stream": _IMAGE, "img_dir": img_dir, "identities": identities,
                 "image_identity": image_identity}
        chunks = [range(start, min(start + _CHUNK, total + 1)) for start in range(1, total + 1, _CHUNK)]
        workers = min(workers or os.cpu_count() or 1, len(chunks))
        with contextlib.ExitStack() as stack:
            if workers > 1:  # spawned, not forked: the caller may hold TensorFlow's threads
                pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(
                    workers, mp_context=multiprocessing.get_context("spawn"), initializer=drawing_workers.set_state,
                    initargs=(state,)))
                drawn = pool.map(drawing_workers.draw_images, chunks)
            else:
                drawing_workers.set_state(state)
                drawn = map(drawing_workers.draw_images, chunks)
            for indices, rows in zip(chunks, drawn):  # in image order, whatever finishes first
                for index, (attrs, landmark_values) in zip(indices, rows):
                    ident_id = int(image_identity[index - 1])
                    name = f"{index:06d}.jpg"
                    f_attr.write(_attribute_row(name, [1 if attrs[a] else -1 for a in CELEBA_ATTRIBUTE_NAMES]))
                    f_id.write(f"{name} {ident_id}\n")
                    f_part.write(f"{name} {partition[ident_id]}\n")
                    f_lm.write(_landmark_row(name, landmark_values))
                    if progress is not None and (index % 500 == 0 or index == total):
                        progress(index, total)

    meta = {
        "synthetic": True,
        "complete": True,
        "generator": GENERATOR,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "num_identities": n,
        "images_per_identity": k,
        "num_images": total,
        "image_size": [people.WIDTH, people.HEIGHT],
        "partition_fractions": list(fractions),
        "identities_per_partition": dict(zip(PARTITION_NAMES, counts)),
        "images_per_partition": {p: counts[i] * k for i, p in enumerate(PARTITION_NAMES)},
        "male_fraction_identities": round(float(male[1:].mean()), 6),
        "male_fraction_images": round(float(male[image_identity].mean()), 6),
        "attribute_sources": {"drawn": list(DRAWN_ATTRIBUTES), "random": list(RANDOM_ATTRIBUTES)},
    }
    with open_text(METADATA_FILE) as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out_dir, README_FILE), "w", encoding="utf-8", newline="\n") as f:
        f.write(_readme(meta))
    return {**meta, "out_dir": out_dir}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.synthetic.celeba_layout",
        description="Generate a deterministic SYNTHETIC face dataset in the CelebA aligned layout "
                    "(img_align_celeba/ + the four label files). Same arguments give byte-identical files.")
    parser.add_argument("--out", required=True, help="output folder (local path); created if missing")
    parser.add_argument("--identities", type=int, default=400, help="number of synthetic identities (default 400)")
    parser.add_argument("--images-per-identity", type=int, default=8, help="images drawn per identity (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument("--partition-fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1),
                        metavar=("TRAIN", "VAL", "TEST"),
                        help="fractions of identities in partitions 0/1/2, summing to 1 (default 0.8 0.1 0.1)")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def report(done, total):
        print(f"[synthetic_celeba] {done}/{total} images ({time.perf_counter() - start:.1f}s)", flush=True)

    try:
        _check_args(args.out, args.identities, args.images_per_identity, args.seed, args.partition_fractions)
    except (ValueError, FileExistsError) as err:
        parser.error(str(err))
    summary = generate(args.out, args.identities, args.images_per_identity, args.seed,
                       args.partition_fractions, progress=report)
    summary.pop("attribute_sources")  # long; it is in the folder's README.md and metadata
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(f"[synthetic_celeba] done in {time.perf_counter() - start:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
