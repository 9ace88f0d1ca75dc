"""The bulk sanitization job end to end on real files: aligned synthetic faces (SYNTHETIC data),
a corpus of bad inputs, re-runs, and a run interrupted part-way then re-run."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from bulk_helpers import (export_small_model, image_files, manifest_rows, metadata_found, save_with_metadata,
                          snapshot, start_then_kill)
from pipelines.sanitize.manifest import MANIFEST_SCHEMA, read_dead_letter
from pipelines.config import SanitizeJobConfig
from pipelines.sanitize.job import run_job

REPO = Path(__file__).resolve().parents[1]
IN_MEMORY = ["--direct_running_mode=in_memory"]
MULTI = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_small_model(tmp_path_factory.mktemp("model") / "1700000000")


@pytest.fixture(scope="module")
def aligned_faces(tmp_path_factory):
    """12 SYNTHETIC CelebA-style aligned faces in two sub-folders, JPEG and PNG, all carrying EXIF
    (with GPS), an ICC profile and a comment."""
    from components.synthetic import celeba_layout as synthetic_celeba

    raw = tmp_path_factory.mktemp("synthetic")
    synthetic_celeba.generate(str(raw), num_identities=4, images_per_identity=3, seed=3)
    root = tmp_path_factory.mktemp("aligned")
    for index, source in enumerate(sorted((raw / "img_align_celeba").glob("*.jpg"))):
        folder = root / ("a" if index % 2 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".png" if index % 3 == 0 else ".jpg"
        save_with_metadata(Image.open(source), folder / (source.stem + suffix))
    return root


def _settings(input_dir, output, args=IN_MEMORY, **overrides):
    return SanitizeJobConfig(input=str(input_dir), output=str(output), beam_pipeline_args=list(args),
                             progress_every_s=0, **overrides)


def _face_box(width, height, eyes=SanitizeJobConfig().aligned_eyes):
    """Central part of the aligned-face footprint in an aligned crop (inside the feathered border)."""
    eye_distance = (eyes[2] - eyes[0]) * width
    side = eye_distance / 0.3
    cx, cy = (eyes[0] + eyes[2]) / 2 * width, eyes[1] * height + 0.1 * side
    half = 0.3 * side
    return int(cx - half), int(cy - half), int(cx + half), int(cy + half)


def test_aligned_folder_end_to_end_on_two_processes(model, aligned_faces, tmp_path):
    inputs = sorted(str(p.relative_to(aligned_faces)) for p in aligned_faces.rglob("*") if p.is_file())
    for rel in inputs:  # the check below can fail: every input carries metadata
        assert {"exif", "gps", "icc_profile"} <= set(metadata_found((aligned_faces / rel).read_bytes())), rel
    out = tmp_path / "out"
    summary = run_job(_settings(aligned_faces, out, MULTI), model_dir=model)
    assert summary["inputs"] == len(inputs) == summary["sanitized"] and summary["rejected"] == 0
    assert summary["inputs_listed_this_run"] == len(inputs)
    rows = manifest_rows(out)
    assert sorted(rows) == inputs
    for rel in inputs:
        row = rows[rel]
        assert (row["status"], row["faces"], row["output_key"], row["model_version"]) == ("sanitized", 1, rel,
                                                                                          "1700000000")
        data = (out / "images" / rel).read_bytes()
        assert metadata_found(data) == [], rel
        original = Image.open(aligned_faces / rel)
        sanitized = Image.open(io.BytesIO(data))
        assert sanitized.format == original.format and sanitized.size == original.size
        before, after = np.asarray(original.convert("RGB"), float), np.asarray(sanitized.convert("RGB"), float)
        x0, y0, x1, y1 = _face_box(*original.size)
        assert np.abs(after[y0:y1, x0:x1] - before[y0:y1, x0:x1]).mean() > 10, rel  # the face changed
        # far from the face (top-left corner) the photo is kept (up to JPEG re-encoding)
        assert np.abs(after[:12, :12] - before[:12, :12]).mean() < 6
    assert read_dead_letter(str(out)) == []
    job = json.loads((out / "job.json").read_text())
    assert job["model"]["sha256"] == rows[inputs[0]]["model_sha256"] and job["settings"]["faces"] == "aligned"
    # the model's privacy policy travels into job.json, every manifest row and the summary
    gender = {"name": "gender", "suppress": ["Male"], "preserve": ["identity"]}
    assert job["model"]["policy"] == summary["privacy_policy"] == gender
    assert {row["privacy_policy"] for row in rows.values()} == {json.dumps(gender, sort_keys=True)}


def _png_declaring(width, height) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _encoded(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    """Name -> (status, reason) expected; the files are in the returned folder."""
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    face = Image.fromarray(rng.integers(0, 255, (218, 178, 3), dtype=np.uint8))
    good_jpeg = _encoded(face, "JPEG", quality=90)
    files = {
        "good.jpg": (good_jpeg, ("sanitized", "")),
        "truncated.jpg": (good_jpeg[: len(good_jpeg) // 3], ("rejected", "undecodable")),
        "zero.jpg": (b"", ("rejected", "empty")),
        "text.jpg": (b"this is not an image\n", ("rejected", "undecodable")),
        "alpha.png": (_encoded(face.convert("RGBA"), "PNG"), ("sanitized", "")),
        "sixteen.png": (_encoded(Image.fromarray((rng.integers(0, 65535, (218, 178))).astype(np.uint16)), "PNG"),
                        ("sanitized", "")),
        "cmyk.jpg": (_encoded(face.convert("CMYK"), "JPEG"), ("sanitized", "")),
        "huge.png": (_png_declaring(60_000, 60_000), ("rejected", "too_large")),
        "gray.jpg": (_encoded(face.convert("L"), "JPEG"), ("sanitized", "")),
        "tiny.png": (_encoded(face.resize((6, 6)), "PNG"), ("rejected", "too_small")),
        "anim.gif": (_encoded(face.convert("P"), "GIF"), ("sanitized", "")),
        "portable.ppm": (_encoded(face, "PPM"), ("rejected", "unsupported_format")),  # Pillow reads it, we do not
        "notes/readme.txt": (b"a stray text file\n", ("rejected", "undecodable")),
    }
    for name, (data, _) in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root, {name: expected for name, (_, expected) in files.items()}


def test_bad_inputs_end_up_exactly_in_sanitized_plus_dead_letter(model, bad_corpus, tmp_path):
    root, expected = bad_corpus
    out = tmp_path / "out"
    summary = run_job(_settings(root, out), model_dir=model)
    rows = manifest_rows(out)
    assert {key: (row["status"], row["reason"]) for key, row in rows.items()} == expected
    rejected = {name for name, (status, _) in expected.items() if status == "rejected"}
    sanitized = set(expected) - rejected
    assert summary["inputs"] == len(expected) == summary["sanitized"] + summary["rejected"]
    assert summary["rejected_by_reason"] == {"empty": 1, "too_large": 1, "too_small": 1, "undecodable": 3,
                                             "unsupported_format": 1}
    dead = {row["input_key"]: row for row in read_dead_letter(str(out))}
    assert set(dead) == rejected
    assert all(dead[name]["reason"] == expected[name][1] and dead[name]["detail"] for name in rejected)
    assert set(image_files(out)) == sanitized
    for name in sanitized:
        original, written = Image.open(root / name), Image.open(out / "images" / name)
        assert written.size == original.size and written.format == original.format


def test_second_run_writes_nothing_new(model, bad_corpus, tmp_path):
    root, expected = bad_corpus
    out = tmp_path / "out"
    run_job(_settings(root, out), model_dir=model)
    before = snapshot(out)
    summary = run_job(_settings(root, out), model_dir=model)
    assert snapshot(out) == before  # same files, same inodes, same mtimes
    assert summary["already_done"] == len(expected) and summary["this_run"]["images_read"] == 0
    assert summary["inputs"] == len(expected)


def test_rerun_with_other_settings_or_model_is_refused(model, bad_corpus, tmp_path):
    root, _ = bad_corpus
    out = tmp_path / "out"
    run_job(_settings(root, out), model_dir=model)
    with pytest.raises(SystemExit, match="color: output has 'skin', this run 'keep-chroma'"):
        run_job(_settings(root, out, color="keep-chroma"), model_dir=model)
    other = export_small_model(tmp_path / "other" / "1800000000")
    with pytest.raises(SystemExit, match="sha256"):
        run_job(_settings(root, out), model_dir=other)


def test_reduced_precision_runs_the_models_bfloat16_signature(model, aligned_faces, tmp_path):
    with pytest.raises(SystemExit, match="exported in float32 only"):
        run_job(_settings(aligned_faces, tmp_path / "refused", precision="bfloat16"), model_dir=model)
    both = export_small_model(tmp_path / "both" / "1900000000", precisions=("bfloat16",))
    outputs = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        summary = run_job(_settings(aligned_faces, out, precision=precision), model_dir=both)
        assert summary["sanitized"] == summary["inputs"] > 0
        assert json.loads((out / "job.json").read_text())["settings"]["precision"] == precision
        outputs[precision] = image_files(out)
    difference = [np.abs(outputs["float32"][name].astype(float) - outputs["bfloat16"][name]).mean()
                  for name in outputs["float32"]]
    assert 0 < np.mean(difference) < 3  # rounding, not another model


def _same_output(a: Path, b: Path):
    assert manifest_rows(a) == manifest_rows(b)
    assert sorted(map(json.dumps, read_dead_letter(str(a)))) == sorted(map(json.dumps, read_dead_letter(str(b))))
    images_a, images_b = image_files(a), image_files(b)
    assert sorted(images_a) == sorted(images_b)
    for name in images_a:
        np.testing.assert_array_equal(images_a[name], images_b[name], err_msg=name)
    files = {rel for rel in snapshot(b)}
    assert not any(rel.startswith(("_progress/", "_tmp/")) for rel in files), files


def test_state_left_by_a_crash_is_completed_to_the_uninterrupted_output(model, aligned_faces, bad_corpus, tmp_path):
    """Builds exactly what a killed run leaves (rows of half the inputs flushed to _progress/, some
    images written whose rows were not flushed yet, a half-written temporary file, no manifest) and
    re-runs: the result equals an uninterrupted run, and images already there are not rewritten."""
    root = tmp_path / "in"
    shutil.copytree(aligned_faces, root)
    shutil.copytree(bad_corpus[0], root / "bad")
    full = tmp_path / "full"
    run_job(_settings(root, full), model_dir=model)
    crashed = tmp_path / "crashed"
    shutil.copytree(full, crashed)
    rows = sorted(manifest_rows(full).values(), key=lambda row: row["input_key"])
    flushed, unflushed = rows[::2], rows[1::2]
    shutil.rmtree(crashed / "manifest")
    shutil.rmtree(crashed / "dead_letter")
    (crashed / "_progress").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(flushed, schema=MANIFEST_SCHEMA),
                   crashed / "_progress" / f"part-deadbeef-n{len(flushed):06d}.parquet")
    kept_unrecorded = [row["output_key"] for row in unflushed if row["output_key"]][:2]
    for row in unflushed:
        if row["output_key"] and row["output_key"] not in kept_unrecorded:
            (crashed / "images" / row["output_key"]).unlink()
    (crashed / "_tmp").mkdir(exist_ok=True)
    (crashed / "_tmp" / "0123abcd").write_bytes(b"half a JPEG")
    before = snapshot(crashed)

    summary = run_job(_settings(root, crashed), model_dir=model)
    assert summary["already_done"] == len(flushed)
    assert summary["this_run"]["images_already_present"] == len(kept_unrecorded)
    _same_output(full, crashed)
    after = snapshot(crashed)
    for row in flushed:  # done before the crash: untouched
        if row["output_key"]:
            rel = os.path.join("images", row["output_key"])
            assert after[rel] == before[rel]
    for key in kept_unrecorded:
        rel = os.path.join("images", key)
        assert after[rel] == before[rel]


def test_killed_run_then_rerun_matches_uninterrupted(model, tmp_path):
    """A real SIGKILL of the job process part-way, then the same command again."""
    from components.synthetic import celeba_layout as synthetic_celeba

    raw = tmp_path / "raw"
    synthetic_celeba.generate(str(raw), num_identities=30, images_per_identity=5, seed=5)
    root = raw / "img_align_celeba"
    full, killed = tmp_path / "full", tmp_path / "killed"
    command = [sys.executable, "-m", "pipelines.sanitize", "--model", model, "--input", str(root), "--batch-size", "2",
               "--direct_running_mode=in_memory", "--progress-every", "1"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start_then_kill(command + ["--output", str(killed)], REPO, env,
                    lambda: bool(list((killed / "_progress").glob("part-*.parquet"))))
    assert not (killed / "manifest").exists()  # killed before it finished
    partial = len(list((killed / "images").glob("*")))
    assert 0 < partial < 150

    subprocess.run(command + ["--output", str(killed)], cwd=REPO, env=env, check=True, capture_output=True)
    subprocess.run(command + ["--output", str(full)], cwd=REPO, env=env, check=True, capture_output=True)
    _same_output(full, killed)
    assert len(manifest_rows(killed)) == 150


def test_a_deidentify_model_runs_unchanged_and_its_policy_is_recorded(aligned_faces, tmp_path):
    """[identity policies]: the bulk job runs a model whose policy suppresses identity as any
    other, records that policy in job.json, the summary and every manifest row, and refuses a kept
    field that names the person."""
    from pipelines.sanitize.job import check_kept_fields
    from pipelines.sanitize.model import model_facts

    deidentify = {"name": "deidentify", "suppress": ["identity"], "preserve": ["Smiling", "Eyeglasses", "Male", "Young"]}
    model_dir = export_small_model(tmp_path / "model" / "1700000001", policy=deidentify)
    assert model_facts(model_dir).suppressed == ("identity",)
    out = tmp_path / "out"
    summary = run_job(_settings(aligned_faces, out), model_dir=model_dir)
    assert summary["sanitized"] == summary["inputs"] > 0 and summary["rejected"] == 0
    job = json.loads((out / "job.json").read_text())
    assert job["model"]["policy"] == summary["privacy_policy"] == deidentify
    assert {row["privacy_policy"] for row in manifest_rows(out).values()} == {json.dumps(deidentify, sort_keys=True)}
    with pytest.raises(SystemExit, match="--keep-fields person_id: the model's privacy policy suppresses identity"):
        check_kept_fields(_settings(aligned_faces, out, keep_fields=("person_id",)), ("identity",))


def test_a_replacing_deidentify_model_runs_unchanged_in_both_precisions(aligned_faces, tmp_path):
    """[identity policies]: a k-Same replacing sanitizer (trainer/identity_replacement.py, its
    statistics and readers installed as the SanTrainer does) exported with its bfloat16 copy runs in
    the bulk job like any model: every face changed, both precisions agree up to rounding."""
    import dataclasses

    import tensorflow as tf

    from trainer.config import TrainingConfig
    from trainer.export import SanitizerModule, save_sanitizer
    from trainer.identity_replacement import fit_identity_replacement
    from trainer.models import build_attribute_classifier, build_gender_classifier, reduced_precision_networks
    from trainer.policy import PrivacyPolicy
    from trainer.san import sanitizer_of

    size = 32
    config = dataclasses.replace(TrainingConfig(policy=PrivacyPolicy.from_arguments("deidentify")), image_size=size,
                                 replacement_components=8, replacement_donors=4)
    tf.keras.utils.set_random_seed(0)
    san, classifier = sanitizer_of(config), build_gender_classifier(size)
    faces = np.random.default_rng(0).random((40, size, size, 1)).astype(np.float32)
    labels = np.random.default_rng(1).integers(0, 2, (40, 4))
    # Readers that decide clearly (untrained ones read about 0.5, where bfloat16 rounding flips the
    # group of some faces): male, and each other attribute alternately yes and no.
    reader = build_attribute_classifier(size, config.policy.other_attributes)
    gender = classifier.get_layer("gender")
    gender.set_weights([gender.get_weights()[0] * 0, np.array([-10.0, 10.0], np.float32)])
    for index in range(len(config.policy.other_attributes)):
        head = reader.get_layer(f"head_{index}")
        head.set_weights([head.get_weights()[0] * 0, np.array([10.0 if index % 2 else -10.0], np.float32)])
    san.install(fit_identity_replacement(faces, np.repeat(np.arange(10), 4), labels, 8, 2, 4), classifier, reader)
    reduced = reduced_precision_networks(lambda: sanitizer_of(config), san, classifier, size, ("bfloat16",))
    prototypes = {name: tf.fill((size, size, 3), value) for name, value in (("male", 0.9), ("female", 0.1),
                                                                            ("neutral", 0.5))}
    model_dir = str(tmp_path / "model" / "1700000002")
    save_sanitizer(SanitizerModule(san, classifier, prototypes, size, reduced), model_dir,
                   metadata={"training_config": config.to_custom_config(), "policy": config.policy.to_dict()})
    outputs = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        summary = run_job(_settings(aligned_faces, out, precision=precision), model_dir=model_dir)
        assert summary["sanitized"] == summary["inputs"] > 0 and summary["rejected"] == 0
        assert summary["privacy_policy"]["name"] == "deidentify"
        outputs[precision] = image_files(out)
    for rel, after in outputs["float32"].items():
        before = np.asarray(Image.open(aligned_faces / rel).convert("RGB"), float)
        x0, y0, x1, y1 = _face_box(before.shape[1], before.shape[0])
        assert np.abs(after[y0:y1, x0:x1].astype(float) - before[y0:y1, x0:x1]).mean() > 10, rel
    difference = [np.abs(outputs["float32"][name].astype(float) - outputs["bfloat16"][name]).mean()
                  for name in outputs["float32"]]
    assert max(difference) < 1, difference  # the replacement computes in float32 in both


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_the_paste_back_runs_with_one_blas_thread_and_the_process_gets_its_setting_back(
        model, aligned_faces, tmp_path, monkeypatch):
    """numpy's BLAS threads on the cores Beam's workers and TensorFlow already use made the job 30%
    slower (README, "Bulk sanitization"); the job keeps them to one while it runs, locally too."""
    from threadpoolctl import threadpool_limits

    import pipelines.sanitize.faces as faces_module

    seen = []
    paste = faces_module.paste_face

    def recording_paste(*args, **kwargs):
        seen.extend(_blas_threads())
        return paste(*args, **kwargs)

    monkeypatch.setattr(faces_module, "paste_face", recording_paste)
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        assert before and set(before) == {2}
        summary = run_job(_settings(aligned_faces, tmp_path / "out", args=["--direct_running_mode=multi_threading",
                                                                             "--direct_num_workers=2"]),
                          model_dir=model)
        assert summary["sanitized"] == summary["inputs"] > 0
        assert len(seen) == summary["inputs"] * len(before) and set(seen) == {1}
        assert _blas_threads() == before  # run_job restored the process's own setting


def test_a_remote_workers_thread_sets_one_blas_thread_itself():
    """A worker process of a remote runner (Dataflow, a portable runner's pool): no driver set the
    limit, so the DoFn's setup, on one of the harness's threads, does."""
    script = ("import threading, numpy, scipy.linalg\n"
              "from threadpoolctl import threadpool_info\n"
              "from pipelines.sanitize.faces import one_blas_thread\n"
              "blas = lambda: [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
              "print('before', blas())\n"
              "worker = threading.Thread(target=one_blas_thread); worker.start(); worker.join()\n"
              "print('after', blas())\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", PYTHONPATH=str(REPO))
    lines = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                           cwd=REPO).stdout.splitlines()
    counts = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines if line.startswith(("before", "after"))}
    before, after = json.loads(counts["before"]), json.loads(counts["after"])
    assert before and set(before) == {2}
    assert after == [1] * len(before)
