"""CelebA ingestion on a hand-written layout with faults injected, through Beam's TestPipeline."""

import base64
import json

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline
from PIL import Image

from components.celeba import layout as fmt
from components.celeba.ingest import ReadCelebA
from components.faces.imaging import ALIGNED_LEFT_EYE, ALIGNED_RIGHT_EYE
from trainer import features

ATTRIBUTES = ["Bald", "Male", "Young"]
SIZE = 64


def _face(left_eye, right_eye):
    ys, xs = np.mgrid[0:218, 0:178]
    image = np.zeros((218, 178))
    for x, y in (left_eye, right_eye):
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 4.0**2))
    return Image.fromarray(np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[:, :, None], 3, axis=2))


def write_layout(root, faults=True):
    """8 images, partitions 0,0,0,1,1,2,2,2; eyes drawn where the landmarks say.

    With faults: 000004 has a bad attribute row, 000005's file is text, 000006 has no partition
    row, 000007's image file is missing, and stray.jpg has no labels at all.
    """
    images = root / fmt.IMAGES_DIR
    images.mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 9)]
    partitions = [0, 0, 0, 1, 1, 2, 2, 2]
    attr_rows, landmark_rows = [], []
    for index, name in enumerate(names):
        left, right = (60 + index, 105 + index % 3), (110 + index, 112 - index % 2)
        _face(left, right).save(images / name, quality=95)
        values = [1 if (index + k) % 2 else -1 for k in range(3)]
        attr_rows.append(name + "".join(f"{v:3d}" for v in values))
        landmark_rows.append(name + "".join(f"{v:5d}" for v in (*left, *right, 85, 140, 70, 160, 100, 160)))
    identity_rows = [f"{name} {10 + i // 2}" for i, name in enumerate(names)]
    partition_rows = [f"{name} {p}" for name, p in zip(names, partitions)]
    if faults:
        attr_rows[3] = "000004.jpg  1  2"  # wrong count and value
        (images / "000005.jpg").write_text("not an image")
        del partition_rows[5]  # 000006.jpg
        (images / "000007.jpg").unlink()
        _face((60, 110), (110, 110)).save(images / "stray.jpg")
    (root / fmt.ATTRIBUTES_FILE).write_text(f"{len(names)}\n{' '.join(ATTRIBUTES)} \n" + "\n".join(attr_rows) + "\n")
    (root / fmt.LANDMARKS_FILE).write_text(
        f"{len(names)}\n{' '.join(fmt.LANDMARK_NAMES)}\n" + "\n".join(landmark_rows) + "\n")
    (root / fmt.IDENTITY_FILE).write_text("\n".join(identity_rows) + "\n")
    (root / fmt.PARTITION_FILE).write_text("\n".join(partition_rows) + "\n")
    return names, partitions


def _run(root):
    """Runs ReadCelebA and reads its two outputs back from files (DoFns run in other contexts)."""
    out = root.parent / (root.name + "_out")
    with TestPipeline() as pipeline:
        outputs = pipeline | ReadCelebA(str(root), SIZE, fmt.read_attribute_names(str(root)))
        _ = (outputs["examples"]
             | "ExamplesToJson" >> beam.Map(lambda item: json.dumps([item[0], base64.b64encode(item[1]).decode()]))
             | "WriteExamples" >> beam.io.WriteToText(str(out / "examples"), shard_name_template=""))
        _ = (outputs["rejected"] | "RejectedToJson" >> beam.Map(json.dumps)
             | "WriteRejected" >> beam.io.WriteToText(str(out / "rejected"), shard_name_template=""))
    examples = [(p, base64.b64decode(b)) for p, b in map(json.loads, (out / "examples").read_text().splitlines())]
    rejected = [json.loads(line) for line in (out / "rejected").read_text().splitlines()]
    return examples, rejected


def _parse(serialized):
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    return {
        "image_id": feature[features.IMAGE_ID_KEY].bytes_list.value[0].decode(),
        "image": np.asarray(Image.open(__import__("io").BytesIO(feature[features.IMAGE_KEY].bytes_list.value[0]))),
        "male": feature[features.MALE_KEY].int64_list.value[0],
        "identity": feature[features.IDENTITY_KEY].int64_list.value[0],
        "attrs": {k: v.int64_list.value[0] for k, v in feature.items() if k.startswith(features.ATTRIBUTE_PREFIX)},
    }


def test_clean_layout_ingests_every_image_into_its_partition(tmp_path):
    names, partitions = write_layout(tmp_path, faults=False)
    examples, rejected = _run(tmp_path)
    assert rejected == []
    got = {_parse(payload)["image_id"]: partition for partition, payload in examples}
    assert got == dict(zip(names, partitions))


def test_examples_carry_labels_and_eye_aligned_faces(tmp_path):
    names, _ = write_layout(tmp_path, faults=False)
    examples, _ = _run(tmp_path)
    parsed = {e["image_id"]: e for e in (_parse(payload) for _, payload in examples)}
    first = parsed["000001.jpg"]
    # Row 1: values (-1, 1, -1) for Bald, Male, Young.
    assert first["male"] == 1 and first["attrs"] == {"attr_bald": 0, "attr_young": 0}
    assert first["identity"] == 10
    for example in parsed.values():
        image = example["image"].astype(float)[:, :, 0]
        assert image.shape == (SIZE, SIZE)
        for target in (ALIGNED_LEFT_EYE, ALIGNED_RIGHT_EYE):
            x, y = (np.array(target) * SIZE).astype(int)
            # The brightest pixel near the canonical eye position is within a pixel of it.
            window = image[y - 4:y + 5, x - 4:x + 5]
            peak_y, peak_x = np.unravel_index(np.argmax(window), window.shape)
            assert abs(peak_x - 4) <= 1 and abs(peak_y - 4) <= 1, example["image_id"]


def test_bad_rows_and_images_are_reported_not_fatal(tmp_path):
    write_layout(tmp_path, faults=True)
    examples, rejected = _run(tmp_path)
    kept = sorted(_parse(payload)["image_id"] for _, payload in examples)
    assert kept == ["000001.jpg", "000002.jpg", "000003.jpg", "000008.jpg"]
    reasons = sorted((r["file"], r["reason"]) for r in rejected)
    assert reasons == [
        ("000004.jpg", "bad_label_row"),  # the attribute row itself
        ("000004.jpg", "missing_label"),  # ... so the image has no attribute row
        ("000005.jpg", "undecodable"),
        ("000006.jpg", "missing_label"),
        ("000007.jpg", "missing_image"),
        ("stray.jpg", "missing_label"),
    ]
    by_file = {r["file"]: r for r in rejected if r["reason"] != "bad_label_row"}
    assert "list_eval_partition.txt" in by_file["000006.jpg"]["detail"]
    assert all(json.dumps(r) for r in rejected)
