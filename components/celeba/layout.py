"""Parsers for the CelebA label files (the "aligned" release, local or gs://).

Every row parser returns `(image_name, value)` or raises LabelRowError naming what is wrong, so
ingestion can count and report a bad row instead of crashing on it.
"""

from __future__ import annotations

import posixpath

from apache_beam.io.filesystems import FileSystems

IMAGES_DIR = "img_align_celeba"
ATTRIBUTES_FILE = "list_attr_celeba.txt"
IDENTITY_FILE = "identity_CelebA.txt"
PARTITION_FILE = "list_eval_partition.txt"
LANDMARKS_FILE = "list_landmarks_align_celeba.txt"
LABEL_FILES = (ATTRIBUTES_FILE, IDENTITY_FILE, PARTITION_FILE, LANDMARKS_FILE)

# Header lines (count line + names line) before the rows.
HEADER_LINES = {ATTRIBUTES_FILE: 2, LANDMARKS_FILE: 2, IDENTITY_FILE: 0, PARTITION_FILE: 0}

CELEBA_ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
PARTITION_NAMES = {0: "train", 1: "eval", 2: "test"}  # list_eval_partition.txt: 0/1/2
LANDMARK_NAMES = (
    "lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
    "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y",
)


class LabelRowError(ValueError):
    """A row of a label file that does not parse."""


class CelebALayoutError(FileNotFoundError):
    """The data directory does not hold the CelebA aligned layout."""


def join(root: str, *parts: str) -> str:
    """Joins paths for local directories and gs:// URLs alike."""
    if "://" in root:
        return posixpath.join(root, *parts)
    return FileSystems.join(root, *parts)


def check_layout(root: str) -> None:
    """Raises CelebALayoutError listing every missing file, with what the user should do."""
    missing = [name for name in LABEL_FILES if not FileSystems.exists(join(root, name))]
    if not FileSystems.exists(join(root, IMAGES_DIR)):
        missing.append(IMAGES_DIR + "/")
    if missing:
        raise CelebALayoutError(
            f"--data {root!r} is not a CelebA aligned layout: missing {', '.join(missing)}. "
            "Point --data at the folder that holds img_align_celeba/ and the four label files "
            "(list_attr_celeba.txt, identity_CelebA.txt, list_eval_partition.txt, "
            "list_landmarks_align_celeba.txt), or leave --data out to use the embedded synthetic data."
        )


def read_header(path: str, num_lines: int) -> list[str]:
    with FileSystems.open(path) as handle:
        lines = []
        for _ in range(num_lines):
            lines.append(handle.readline().decode("utf-8").strip())
    return lines


def read_attribute_names(root: str) -> list[str]:
    """The 40 attribute names on line 2 of list_attr_celeba.txt."""
    count_line, names_line = read_header(join(root, ATTRIBUTES_FILE), 2)
    names = names_line.split()
    if not names or "Male" not in names:
        raise CelebALayoutError(
            f"{join(root, ATTRIBUTES_FILE)}: line 2 should list the attribute names including "
            f"'Male', found {names_line[:200]!r}"
        )
    return names


def _split_row(line: str, expected_values: int) -> tuple[str, list[str]]:
    fields = line.split()
    if len(fields) != expected_values + 1:
        raise LabelRowError(f"expected an image name and {expected_values} values, found {len(fields)} fields")
    return fields[0], fields[1:]


def _ints(values: list[str]) -> list[int]:
    try:
        return [int(value) for value in values]
    except ValueError:
        raise LabelRowError(f"non-integer value in {values[:12]}") from None


def parse_attribute_row(line: str, names: list[str]) -> tuple[str, dict[str, int]]:
    name, values = _split_row(line, len(names))
    numbers = _ints(values)
    if any(value not in (-1, 1) for value in numbers):
        raise LabelRowError("attribute values must be -1 or 1")
    return name, dict(zip(names, numbers))


def parse_identity_row(line: str) -> tuple[str, int]:
    name, values = _split_row(line, 1)
    (identity,) = _ints(values)
    if identity < 0:
        raise LabelRowError(f"identity must be non-negative, found {identity}")
    return name, identity


def parse_partition_row(line: str) -> tuple[str, int]:
    name, values = _split_row(line, 1)
    (partition,) = _ints(values)
    if partition not in PARTITION_NAMES:
        raise LabelRowError(f"partition must be 0, 1 or 2, found {partition}")
    return name, partition


def parse_landmark_row(line: str) -> tuple[str, tuple[int, ...]]:
    name, values = _split_row(line, len(LANDMARK_NAMES))
    return name, tuple(_ints(values))
