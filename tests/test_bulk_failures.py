"""One odd input never stops the bulk job: an exception at any stage of one input becomes a
dead-letter row naming that stage, and the key-by-key accounting catches a listed input without
a manifest row. (In-process DirectRunner, so the stage functions can be made to fail for chosen
inputs; faces are SYNTHETIC noise crops.)"""

from __future__ import annotations

import io

import numpy as np
import pyarrow.compute as pc
import pytest
from PIL import Image

from bulk_helpers import export_small_model, manifest_rows
from components.faces.detection import FoundFace
from pipelines.config import SanitizeJobConfig
from pipelines.sanitize import faces as faces_module
from pipelines.sanitize import model as model_module
from pipelines.sanitize.job import run_job
from pipelines.sanitize.manifest import WriteManifestShard, read_dead_letter

# The input of width W fails at the stage named (W is how the patched functions recognise it).
FAILING = {101: "decode", 102: "detect", 103: "align", 104: "inference", 105: "compose", 106: "encode"}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_small_model(tmp_path_factory.mktemp("model") / "3")


def _jpeg(width: int, seed: int, black: bool = False) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (150, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels * 0 if black else pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def _settings(folder, out, **overrides):
    return SanitizeJobConfig(input=str(folder), output=str(out), batch_size=4, progress_every_s=0,
                             beam_pipeline_args=["--direct_running_mode=in_memory"], **overrides)


class _Finder:
    """A face finder that finds one face in the middle of every photo, and crashes on width 102."""

    def __init__(self, *args):
        pass

    def find(self, pixels):
        height, width = pixels.shape[:2]
        if width == 102:
            raise RuntimeError("detector crashed")
        return [FoundFace((0.4 * width, 0.45 * height), (0.6 * width, 0.45 * height), (0, 0, width, height))]

    def find_any_orientation(self, pixels):
        return self.find(pixels), 0

    def smallest_face(self, height, width):
        return 1.0


def _failing(function, stage, width_of):
    def wrapper(*args, **kwargs):
        if FAILING.get(width_of(*args)) == stage:
            raise ValueError(f"{stage} broke")
        return function(*args, **kwargs)
    return wrapper


def test_every_stage_failure_is_one_dead_letter_row_and_the_job_goes_on(model, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for width, stage in FAILING.items():
        (folder / f"{stage}.jpg").write_bytes(_jpeg(width, width, black=stage == "inference"))
    for index in range(3):
        (folder / f"good{index}.jpg").write_bytes(_jpeg(120 + index, index))
    (folder / "write.jpg").write_bytes(_jpeg(130, 9))

    decode = faces_module.decode_image
    monkeypatch.setattr(faces_module, "FaceFinder", _Finder)
    monkeypatch.setattr(faces_module, "decode_image", lambda data, *a: _decode_failing(decode, data, *a))
    monkeypatch.setattr(faces_module, "align_face", _failing(faces_module.align_face, "align", lambda p, *a: p.shape[1]))
    monkeypatch.setattr(faces_module, "paste_face",
                        _failing(faces_module.paste_face, "compose", lambda p, *a: p.shape[1]))
    monkeypatch.setattr(faces_module, "encode_like", _failing(faces_module.encode_like, "encode", lambda p, *a: p.shape[1]))
    sanitize = model_module.SanitizerModelHandler.sanitize

    def sanitize_unless_black(self, loaded, faces):
        if (faces.reshape(len(faces), -1).max(axis=1) < 0.02).any():
            raise ValueError("the model cannot take a black face")
        return sanitize(self, loaded, faces)

    monkeypatch.setattr(model_module.SanitizerModelHandler, "sanitize", sanitize_unless_black)
    write = faces_module.write_atomically

    def write_failing(path, *args):
        if path.endswith("write.jpg"):
            raise OSError("disk full")
        return write(path, *args)

    monkeypatch.setattr(faces_module, "write_atomically", write_failing)
    out = tmp_path / "out"
    summary = run_job(_settings(folder, out, faces="wild", detector="dlib"), model_dir=model)  # the patched finder
    rows = manifest_rows(out)
    assert {key: (row["status"], row["reason"]) for key, row in rows.items()} == {
        **{f"{stage}.jpg": ("rejected", f"{stage}_failed") for stage in FAILING.values()},
        "write.jpg": ("rejected", "write_failed"),
        **{f"good{index}.jpg": ("sanitized", "") for index in range(3)},
    }
    assert rows["encode.jpg"]["width"] == 106 and rows["inference.jpg"]["detail"].startswith("ValueError")
    assert summary["inputs"] == 10 and summary["sanitized"] == 3 and summary["rejected"] == 7
    dead = {row["input_key"]: row["reason"] for row in read_dead_letter(str(out))}
    assert dead == {key: row["reason"] for key, row in rows.items() if row["status"] == "rejected"}
    assert sorted(p.name for p in (out / "images").iterdir()) == ["good0.jpg", "good1.jpg", "good2.jpg"]


def _decode_failing(decode, data, *args):
    decoded = decode(data, *args)
    if FAILING.get(decoded.pixels.shape[1]) == "decode":
        raise MemoryError("decoder ran out of memory")
    return decoded


def test_a_listed_input_without_a_manifest_row_fails_the_job_naming_it(model, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (folder / name).write_bytes(_jpeg(178, ord(name[0])))
    original = WriteManifestShard.process

    def losing_b(self, element, unconsolidated):
        index, (rows, count) = element
        yield from original(self, (index, (rows.filter(pc.not_equal(rows["input_key"], "b.jpg")), count)),
                            unconsolidated)

    monkeypatch.setattr(WriteManifestShard, "process", losing_b)
    with pytest.raises(SystemExit, match=r"1 listed inputs have no manifest row \(b\.jpg\), 0 manifest rows"):
        run_job(_settings(folder, tmp_path / "out"), model_dir=model)
    assert set(manifest_rows(tmp_path / "out")) == {"a.jpg", "c.jpg"}
    monkeypatch.setattr(WriteManifestShard, "process", original)
    # A re-run completes it: b.jpg has no row, so it is sanitized again and recorded.
    summary = run_job(_settings(folder, tmp_path / "out"), model_dir=model)
    assert set(manifest_rows(tmp_path / "out")) == {"a.jpg", "b.jpg", "c.jpg"} and summary["inputs"] == 3


def test_a_small_photo_travels_decoded_to_the_paste_back_and_a_large_one_is_decoded_again(model, tmp_path,
                                                                                         monkeypatch):
    """Photos up to CARRY_DECODED_PIXELS are decoded once (the pixels go with the faces through the
    model); larger ones are decoded again for the paste-back, so a batch does not hold them. Both
    come out sanitized the same way."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "small.jpg").write_bytes(_jpeg(120, 1))  # 120 x 150
    (folder / "large.jpg").write_bytes(_jpeg(140, 2))  # 140 x 150
    decoded = []
    decode = faces_module.decode_image

    def counting(data, *args):
        image = decode(data, *args)
        decoded.append(image.pixels.shape[1])
        return image

    monkeypatch.setattr(faces_module, "FaceFinder", _Finder)
    monkeypatch.setattr(faces_module, "decode_image", counting)
    monkeypatch.setattr(faces_module, "CARRY_DECODED_PIXELS", 130 * 150)
    out = tmp_path / "out"
    summary = run_job(_settings(folder, out, faces="wild", detector="dlib"), model_dir=model)
    assert summary["sanitized"] == 2
    assert sorted(decoded) == [120, 140, 140]
    assert {key: row["status"] for key, row in manifest_rows(out).items()} == {"small.jpg": "sanitized",
                                                                               "large.jpg": "sanitized"}


def test_rows_in_parts_whose_names_never_reach_the_consolidation_are_still_in_the_manifest(model, tmp_path,
                                                                                          monkeypatch):
    """The manifest does not depend on the names of the _progress/ parts reaching the consolidation
    (its rows travel through the graph; the parts are for killed runs and the progress line): with
    every emitted name lost, every row is still there, and the clean-up still removes the parts."""
    from pipelines.sanitize.manifest import RecordProgress

    def losing_names(self):
        for _ in self._flush():  # the parts are written, their names never emitted
            pass
        yield from ()

    monkeypatch.setattr(RecordProgress, "finish_bundle", losing_names)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (folder / name).write_bytes(_jpeg(178, ord(name[0])))
    (folder / "bad.jpg").write_bytes(b"not a photo")
    summary = run_job(_settings(folder, tmp_path / "out"), model_dir=model)
    rows = manifest_rows(tmp_path / "out")
    assert {key: row["status"] for key, row in rows.items()} == {
        "a.jpg": "sanitized", "b.jpg": "sanitized", "c.jpg": "sanitized", "bad.jpg": "rejected"}
    assert summary["inputs"] == 4 and not list((tmp_path / "out" / "_progress").iterdir())
