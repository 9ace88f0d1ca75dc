"""Tests for the embedded synthetic CelebA generator.

The label files are checked against the raw text with independent regexes (not the project's own
parsers), so a format drift shows up here first.
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from components.synthetic import celeba_layout as sc
from components.synthetic import drawing, people

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# CelebA's attribute header, written out independently of the module under test.
CELEBA_HEADER = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
)
LANDMARK_HEADER = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
LABEL_FILES = ("list_attr_celeba.txt", "identity_CelebA.txt", "list_eval_partition.txt",
               "list_landmarks_align_celeba.txt")

ATTR_ROW = re.compile(r"^(\d{6}\.jpg)((?: -1|  1){40})$")
LANDMARK_ROW = re.compile(r"^(\d{6}\.jpg) ((?:[ \d-]{4}\d){10})$")  # 5-wide right-aligned ints
IDENTITY_ROW = re.compile(r"^(\d{6}\.jpg) ([1-9]\d*)$")
PARTITION_ROW = re.compile(r"^(\d{6}\.jpg) ([012])$")

N_IDS, N_PER = 12, 3


def _lines(folder, name):
    with open(os.path.join(folder, name), "rb") as f:
        raw = f.read()
    assert b"\r" not in raw
    assert raw.endswith(b"\n")
    return raw.decode("ascii").split("\n")[:-1]


def _rows(folder, name, pattern, header_lines):
    lines = _lines(folder, name)[header_lines:]
    matches = [pattern.match(line) for line in lines]
    bad = [line for line, m in zip(lines, matches) if m is None]
    assert not bad, f"{name}: rows not in CelebA format, e.g. {bad[:3]}"
    return matches


def _column(folder, name, pattern):
    return {m.group(1): int(m.group(2)) for m in _rows(folder, name, pattern, 0)}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("small"))
    summary = sc.generate(out, num_identities=N_IDS, images_per_identity=N_PER, seed=0)
    return out, summary


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """Enough identities for the learnability checks (about 5 s to generate)."""
    out = str(tmp_path_factory.mktemp("medium"))
    sc.generate(out, num_identities=80, images_per_identity=4, seed=0, partition_fractions=(0.6, 0.2, 0.2))
    attr = {m.group(1): m.group(2).split() for m in _rows(out, "list_attr_celeba.txt", ATTR_ROW, 2)}
    male_col = CELEBA_HEADER.split().index("Male")
    names = sorted(attr)
    male = np.array([attr[n][male_col] == "1" for n in names], float)
    ident = _column(out, "identity_CelebA.txt", IDENTITY_ROW)
    part = _column(out, "list_eval_partition.txt", PARTITION_ROW)
    pixels = np.array([
        np.asarray(Image.open(os.path.join(out, "img_align_celeba", n)).crop((29, 50, 149, 200))
                   .resize((16, 20), Image.BILINEAR), np.float32).ravel() / 255.0
        for n in names
    ])
    return pixels, male, np.array([ident[n] for n in names]), np.array([part[n] for n in names])


# ------------------------------------------------------------------ layout and formats

def test_all_files_exist_and_summary(small):
    out, summary = small
    for name in LABEL_FILES + ("README.md", "synthetic_celeba.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    images = sorted(os.listdir(os.path.join(out, "img_align_celeba")))
    assert images == [f"{i:06d}.jpg" for i in range(1, N_IDS * N_PER + 1)]
    assert summary["num_images"] == N_IDS * N_PER and summary["seed"] == 0
    assert sum(summary["images_per_partition"].values()) == N_IDS * N_PER
    assert 0.3 <= summary["male_fraction_identities"] <= 0.55


def test_attribute_file_format(small):
    out, _ = small
    lines = _lines(out, "list_attr_celeba.txt")
    assert lines[0] == str(N_IDS * N_PER) == str(len(lines) - 2)
    assert lines[1] == CELEBA_HEADER + " "  # CelebA's header line ends with a space
    assert tuple(lines[1].split()) == sc.CELEBA_ATTRIBUTE_NAMES
    rows = _rows(out, "list_attr_celeba.txt", ATTR_ROW, 2)
    values = np.array([[int(v) for v in m.group(2).split()] for m in rows])
    assert set(np.unique(values)) <= {-1, 1}
    assert values.shape == (N_IDS * N_PER, 40)


def test_landmark_file_format(small):
    out, _ = small
    lines = _lines(out, "list_landmarks_align_celeba.txt")
    assert lines[0] == str(N_IDS * N_PER) == str(len(lines) - 2)
    assert lines[1].strip() == LANDMARK_HEADER and tuple(lines[1].split()) == sc.LANDMARK_NAMES
    for m in _rows(out, "list_landmarks_align_celeba.txt", LANDMARK_ROW, 2):
        coords = [int(v) for v in m.group(2).split()]
        assert len(coords) == 10
        xs, ys = coords[0::2], coords[1::2]
        assert all(0 <= x < 178 for x in xs) and all(0 <= y < 218 for y in ys)
        assert xs[0] < xs[1] and xs[3] < xs[4]  # "left" = smaller x


def test_headerless_files_and_same_order(small):
    out, _ = small
    expected = [f"{i:06d}.jpg" for i in range(1, N_IDS * N_PER + 1)]
    orders = {
        "list_attr_celeba.txt": [m.group(1) for m in _rows(out, "list_attr_celeba.txt", ATTR_ROW, 2)],
        "list_landmarks_align_celeba.txt": [m.group(1) for m in _rows(out, "list_landmarks_align_celeba.txt", LANDMARK_ROW, 2)],
        "identity_CelebA.txt": [m.group(1) for m in _rows(out, "identity_CelebA.txt", IDENTITY_ROW, 0)],
        "list_eval_partition.txt": [m.group(1) for m in _rows(out, "list_eval_partition.txt", PARTITION_ROW, 0)],
    }
    for name, order in orders.items():
        assert order == expected, name


def test_images_decode_as_celeba_aligned(small):
    out, _ = small
    for name in sorted(os.listdir(os.path.join(out, "img_align_celeba"))):
        with Image.open(os.path.join(out, "img_align_celeba", name)) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (178, 218)
            im.load()


def test_identities_interleave_and_partitions_disjoint(small):
    out, _ = small
    ident = _column(out, "identity_CelebA.txt", IDENTITY_ROW)
    part = _column(out, "list_eval_partition.txt", PARTITION_ROW)
    ids = [ident[n] for n in sorted(ident)]
    assert sorted(set(ids)) == list(range(1, N_IDS + 1))
    assert all(ids.count(i) == N_PER for i in set(ids))
    assert ids != sorted(ids)  # shuffled, as in CelebA
    by_part = {p: {ident[n] for n in ident if part[n] == p} for p in (0, 1, 2)}
    assert all(by_part[p] for p in (0, 1, 2))
    assert not (by_part[0] & by_part[1] or by_part[0] & by_part[2] or by_part[1] & by_part[2])


def test_three_identities_fill_three_partitions(tmp_path):
    sc.generate(str(tmp_path), num_identities=3, images_per_identity=1, seed=5)
    assert sorted(_column(str(tmp_path), "list_eval_partition.txt", PARTITION_ROW).values()) == [0, 1, 2]


def test_readme_and_metadata_say_synthetic(small):
    out, _ = small
    readme = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    assert "SYNTHETIC" in readme and "NOT CelebA" in readme and "seed 0" in readme
    assert "Pointy_Nose" in readme and "Smiling" in readme
    meta = json.load(open(os.path.join(out, "synthetic_celeba.json")))
    assert meta["synthetic"] is True and meta["complete"] is True and meta["seed"] == 0
    assert meta["generator"] == "components.synthetic.celeba_layout" and meta["num_images"] == N_IDS * N_PER


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    os.makedirs(tmp_path / "img_align_celeba")
    (tmp_path / "img_align_celeba" / "000001.jpg").write_bytes(b"real photo")
    with pytest.raises(FileExistsError):
        sc.generate(str(tmp_path), num_identities=2, images_per_identity=1)


# ------------------------------------------------------------------ determinism

def _all_files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def test_same_seed_is_byte_identical_other_seed_differs(small, tmp_path):
    out, _ = small
    again, other = str(tmp_path / "again"), str(tmp_path / "other")
    sc.generate(again, num_identities=N_IDS, images_per_identity=N_PER, seed=0)
    sc.generate(other, num_identities=N_IDS, images_per_identity=N_PER, seed=1)
    files = _all_files(out)
    assert files == _all_files(again) == _all_files(other)
    _, mismatch, errors = filecmp.cmpfiles(out, again, files, shallow=False)
    assert not mismatch and not errors
    _, mismatch, _ = filecmp.cmpfiles(out, other, files, shallow=False)
    assert "list_attr_celeba.txt" in mismatch and "list_landmarks_align_celeba.txt" in mismatch
    assert sum(f.startswith("img_align_celeba") for f in mismatch) == N_IDS * N_PER


def test_drawing_processes_write_the_same_files_as_one(small, tmp_path, monkeypatch):
    out, _ = small
    monkeypatch.setattr(sc, "_CHUNK", 10)  # 36 images: four tasks
    serial, parallel = str(tmp_path / "serial"), str(tmp_path / "parallel")
    sc.generate(serial, num_identities=N_IDS, images_per_identity=N_PER, seed=0, workers=1)
    seen = []
    sc.generate(parallel, num_identities=N_IDS, images_per_identity=N_PER, seed=0, workers=2,
                progress=lambda done, total: seen.append((done, total)))
    files = _all_files(out)
    assert files == _all_files(serial) == _all_files(parallel)
    for folder in (serial, parallel):
        _, mismatch, errors = filecmp.cmpfiles(out, folder, files, shallow=False)
        assert not mismatch and not errors
    assert seen == [(N_IDS * N_PER, N_IDS * N_PER)]


# ------------------------------------------------------------------ landmarks match the drawing

def _faces(n, seed=7):
    for i in range(n):
        ident = people.sample_identity(np.random.default_rng([seed, 0, i]), male=i % 2 == 0)
        yield ident, people.sample_image(np.random.default_rng([seed, 1, i]), ident)


def test_pupils_are_at_the_eye_landmarks():
    for ident, params in _faces(40):
        img, lm = drawing.render(ident, params, clean=True)
        lum = np.asarray(img.convert("L"), float)
        for x, y in lm[:2]:
            xi, yi = int(round(x)), int(round(y))
            win = lum[yi - 3:yi + 4, xi - 3:xi + 4]
            dark = win <= win.min() + 10  # the pupil is the darkest blob near the landmark
            yy, xx = np.mgrid[-3:4, -3:4]
            assert abs(xx[dark].mean() + xi - x) <= 1.0 and abs(yy[dark].mean() + yi - y) <= 1.0
            assert win[3, 3] < lum[yi + 22, xi] - 40  # much darker than the cheek below


def test_mouth_corners_are_the_drawn_lip_ends():
    # Render twice with different lip colours: the changed pixels are exactly the lips.
    for ident, params in _faces(25):
        params = dataclasses.replace(params, mouth_open=0.0)
        a, lm = drawing.render(dataclasses.replace(ident, lip_colour=(0, 255, 0)), params, clean=True)
        b, _ = drawing.render(dataclasses.replace(ident, lip_colour=(255, 0, 255)), params, clean=True)
        ys, xs = np.nonzero(np.abs(np.asarray(a, float) - np.asarray(b, float)).sum(2) > 60)
        left, right = lm[3], lm[4]
        axis = (right - left) / np.linalg.norm(right - left)
        normal = np.array([-axis[1], axis[0]])
        pts = np.stack([xs, ys], 1)
        along, across = pts @ axis, pts @ normal
        assert abs(along.min() - left @ axis) <= 1.0 and abs(along.max() - right @ axis) <= 1.0
        # The lip tips (last 2.5 px at each end) sit on the corner, not above or below it.
        assert abs(across[along <= along.min() + 2.5].mean() - left @ normal) <= 1.2
        assert abs(across[along >= along.max() - 2.5].mean() - right @ normal) <= 1.2


def test_landmark_geometry_in_dataset(small):
    out, _ = small
    lum_checks = []
    for m in _rows(out, "list_landmarks_align_celeba.txt", LANDMARK_ROW, 2):
        le, re_, nose, lm_, rm = np.array([int(v) for v in m.group(2).split()], float).reshape(5, 2)
        # Express everything in the eye-aligned frame: x along the eye line, y down the face.
        u = (re_ - le) / np.linalg.norm(re_ - le)
        v = np.array([-u[1], u[0]])
        mid = (le + re_) / 2
        nx, ny = (nose - mid) @ u, (nose - mid) @ v
        assert 25 <= np.linalg.norm(re_ - le) <= 50
        assert abs(nx) < 12 and 12 < ny < 40  # nose below the eyes, near the mid-line
        for corner in (lm_, rm):
            assert (corner - mid) @ v > ny  # mouth below the nose
        assert (lm_ - mid) @ u < nx < (rm - mid) @ u  # nose between the mouth corners
        with Image.open(os.path.join(out, "img_align_celeba", m.group(1))) as im:
            lum = np.asarray(im.convert("L"), float)
        for eye, corner in ((le, lm_), (re_, rm)):
            x, y = eye.astype(int)
            cx, cy = ((eye + corner) / 2).astype(int)
            lum_checks.append(lum[y - 1:y + 2, x - 1:x + 2].mean() < lum[cy - 1:cy + 2, cx - 1:cx + 2].mean())
    assert np.mean(lum_checks) >= 0.9  # noisy, blurred, lit images: pupils still darker than cheeks


# ------------------------------------------------------------------ learnability

def test_gender_is_learnable_but_not_trivial(medium):
    x, male, _, part = medium
    train, test = part == 0, part > 0
    assert 0 < male[test].mean() < 1
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-2
    z = (x - mu) / sd
    # Ridge regression to +-1 targets (dual form: fewer samples than pixels).
    a, t = z[train], 2 * male[train] - 1
    w = a.T @ np.linalg.solve(a @ a.T + 100.0 * np.eye(len(a)), t)
    acc = ((z[test] @ w > 0) == male[test]).mean()
    majority = max(male[test].mean(), 1 - male[test].mean())
    assert acc >= 0.65 and acc >= majority + 0.1, (acc, majority)
    # No single pixel gives gender away: the best threshold on any one feature stays far from 100%.
    order = np.argsort(x, axis=0)
    ys = male[order]
    hits = np.cumsum(ys, axis=0)
    k = np.arange(1, len(male) + 1)[:, None]
    acc_split = (k - hits + (hits[-1] - hits)) / len(male)  # predict 0 below the threshold, 1 above
    best = np.maximum(acc_split, 1 - acc_split).max()
    assert best < 0.9, best


def test_images_of_one_identity_are_closer(medium):
    x, _, ident, _ = medium
    d = ((x[:, None, :] - x[None, :, :]) ** 2).mean(2)
    same = ident[:, None] == ident[None, :]
    off_diag = ~np.eye(len(x), dtype=bool)
    assert d[same & off_diag].mean() < 0.9 * d[~same].mean()


# ------------------------------------------------------------------ CLI

def test_cli_help_and_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    help_text = subprocess.run([sys.executable, "-m", "components.synthetic.celeba_layout", "--help"], cwd=ROOT,
                               env=env, capture_output=True, text=True, check=True).stdout
    for flag in ("--out", "--identities", "--images-per-identity", "--seed", "--partition-fractions"):
        assert flag in help_text
    run = subprocess.run([sys.executable, "-m", "components.synthetic.celeba_layout", "--out", str(tmp_path),
                          "--identities", "3", "--images-per-identity", "2", "--seed", "4"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert "6/6 images" in run.stdout and '"num_images": 6' in run.stdout
    assert _lines(str(tmp_path), "list_attr_celeba.txt")[0] == "6"
    bad = subprocess.run([sys.executable, "-m", "components.synthetic.celeba_layout", "--out", str(tmp_path / "x"),
                          "--seed", "-1"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "seed" in bad.stderr
