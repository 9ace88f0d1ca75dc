"""Face-detector recall on group photos made from REAL photos: CenterFace (the bulk job's default),
CenterFace quantized to int8 (`--detector centerface-int8`) and dlib's HOG detector, on the same
photos, with their speed.

    bash infra/with-env.sh python benchmarks/detector_recall.py [--photos 12] [--seed 0]

The real photos are the test photos of the face-recognition 1.3.0 sdist (Obama, Biden, one more;
components/faces/model_files.py). Each group photo pastes 8 of them, scaled so the eye distance
is 8 to 80 px, a third of them tilted by up to 40 degrees, onto a noisy background. The truth is
each pasted face's eye centres (from dlib's 5-point model on the full-size original, mapped
through the paste); a detection finds a face when its eye midpoint lies within half the eye
distance of the true one. Prints recall overall and by face size, and photos/s. Those figures are
measured on composites of real faces, not on natural group photos.

Then one natural group photo (insightface 0.7.3's t1.jpg, six people at a table, 29-53 px between
the eyes): the faces found among the six, whose face centres were marked by hand (a seventh face,
a small portrait in a frame on the wall, is not counted either way).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.faces.centerface import CenterFaceFinder  # noqa: E402
from components.faces.detection import FaceFinder  # noqa: E402
from components.faces.model_files import real_group_photo, real_test_photos  # noqa: E402

PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "32bit.png")
SIZE_BUCKETS = ((8, 16), (16, 32), (32, 80))  # eye distance in px
# The six faces of the natural group photo (t1.jpg, 1280x886): centre between the eyes, marked by hand.
GROUP_PHOTO_FACES = ((110, 320), (320, 200), (520, 330), (800, 400), (960, 120), (1180, 320))


def _sources(finder: FaceFinder) -> list[tuple[np.ndarray, np.ndarray]]:
    """(photo RGB, its one face's eyes [[lx, ly], [rx, ry]]) for each source photo."""
    found = []
    for name in PHOTOS:
        pixels = np.asarray(Image.open(real_test_photos()[name]).convert("RGB"))
        faces = finder.find(pixels)
        if len(faces) == 1:
            found.append((pixels, np.array([faces[0].left_eye, faces[0].right_eye])))
    return found


def group_photo(sources, rng: np.random.Generator, faces: int = 8, size=(1600, 1000)):
    """(photo, true eyes [n, 2, 2]): `faces` pasted photos in a grid, scaled and some tilted."""
    width, height = size
    canvas = np.clip(rng.normal(120, 30, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas)
    columns, rows = 4, 2
    truth = []
    for index in range(faces):
        pixels, eyes = sources[rng.integers(len(sources))]
        target = math.exp(rng.uniform(math.log(8), math.log(80)))  # eye distance in px
        scale = target / np.linalg.norm(eyes[1] - eyes[0])
        photo = Image.fromarray(pixels)
        photo = photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))),
                             Image.Resampling.LANCZOS)
        points = eyes * scale
        angle = rng.uniform(-40, 40) if rng.random() < 1 / 3 else 0.0
        if angle:
            centre = np.array([photo.width / 2, photo.height / 2])
            photo = photo.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False)
            turn = math.radians(-angle)  # PIL rotates counter-clockwise on screen
            rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
            points = (points - centre) @ rotation.T + centre
        cell_w, cell_h = width // columns, height // rows
        face_centre = points.mean(axis=0)
        cx = (index % columns) * cell_w + cell_w / 2
        cy = (index // columns) * cell_h + cell_h / 2
        offset = np.array([cx, cy]) - face_centre
        box = (int(offset[0]), int(offset[1]))
        crop = photo.crop((max(0, -box[0]), max(0, -box[1]), photo.width, photo.height))
        left, top = max(0, box[0]), max(0, box[1])
        cell = (index % columns * cell_w, index // columns * cell_h)
        crop = crop.crop((0, 0, min(crop.width, cell[0] + cell_w - left), min(crop.height, cell[1] + cell_h - top)))
        image.paste(crop, (left, top))
        truth.append(points + np.array(box, dtype=float))
    return np.asarray(image), np.array(truth)


def matched(truth: np.ndarray, found) -> np.ndarray:
    """Whether each true face [n,2,2] has a detection whose eye midpoint is within half its eye distance."""
    hits = np.zeros(len(truth), bool)
    for face in found:
        middle = (np.array(face.left_eye) + np.array(face.right_eye)) / 2
        for index, eyes in enumerate(truth):
            if np.linalg.norm(middle - eyes.mean(axis=0)) < 0.5 * np.linalg.norm(eyes[1] - eyes[0]):
                hits[index] = True
    return hits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=12, help="group photos to make (8 faces each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dlib_finder = FaceFinder(upsample=1, detect_max_side=1600)
    detectors = {"centerface": CenterFaceFinder(detect_max_side=1600),
                 "centerface_int8": CenterFaceFinder(detect_max_side=1600, precision="int8"), "dlib_hog": dlib_finder}
    sources = _sources(FaceFinder(upsample=1, detect_max_side=1 << 30))
    rng = np.random.default_rng(args.seed)
    photos = [group_photo(sources, rng) for _ in range(args.photos)]
    distances = np.concatenate([np.linalg.norm(t[:, 1] - t[:, 0], axis=1) for _, t in photos])
    print(f"{args.photos} group photos (1600x1000) of {len(distances)} REAL faces pasted at eye distance "
          f"{distances.min():.0f}-{distances.max():.0f} px, a third tilted up to 40 degrees")
    for name, finder in detectors.items():
        started = time.perf_counter()
        hits = np.concatenate([matched(truth, finder.find(pixels)) for pixels, truth in photos])
        seconds = time.perf_counter() - started
        buckets = "  ".join(f"{low}-{high} px: {hits[(distances >= low) & (distances < high)].mean():.0%}"
                            for low, high in SIZE_BUCKETS)
        print(f"{name:15s} recall {hits.mean():.1%} ({hits.sum()}/{len(hits)})  by eye distance: {buckets}  "
              f"{args.photos / seconds:.2f} photos/s")
    pixels = np.asarray(Image.open(real_group_photo()).convert("RGB"))
    print(f"natural group photo (insightface t1.jpg, {len(GROUP_PHOTO_FACES)} people, faces marked by hand):")
    for name, finder in detectors.items():
        found = finder.find(pixels)
        hits = sum(any(np.linalg.norm(np.add(face.left_eye, face.right_eye) / 2 - np.array(centre)) < 45
                       for face in found) for centre in GROUP_PHOTO_FACES)
        print(f"{name:15s} {hits}/{len(GROUP_PHOTO_FACES)} faces found ({len(found)} detections in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
