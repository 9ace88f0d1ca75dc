"""The product's speed in one run on one machine: the sanitizer's forward pass (float32 and
bfloat16), the bulk job end to end on aligned faces and on group photos, deface on the same group
photos, and peak memory at two database sizes; every ratio is taken within this run.

    bash infra/with-env.sh python benchmarks/bulk_throughput.py --sizes 1000 10000

(a) raw: the exported sanitizer on batches of aligned SxS gray faces in this process (TensorFlow
    uses all cores): the lean `sanitize_only` signature the bulk job calls, in float32 and in
    bfloat16 (`sanitize_only_bfloat16`), and the full `sanitize_faces` the evaluator calls.
(b) aligned faces end to end: `python -m pipelines.sanitize` (DirectRunner, --mode, --workers) over
    folders of aligned SxS JPEG faces (--aligned-eyes 0.35 0.40 0.65 0.40, the pipeline's alignment,
    so the crop is the image): list, decode, align, RunInference, paste back, re-encode, write,
    manifest; at each of --sizes, float32, and at the smallest size also --precision bfloat16. The
    raw model of the same precision is measured again right after each job, and each ratio to raw
    is to the mean of the raw runs just before and after that job (both printed): the machine's
    speed drifts over minutes.
    Throughput = images / seconds of the sanitize pipeline (the job's own figure; worker start and
    model load included; the one-off driver import and manifest consolidation are in the wall time);
    peak memory = the largest sum of resident memory over the job's process tree (driver + workers),
    sampled every 0.2 s. Also: images/s while sanitizing, from the job's progress lines (every 5 s;
    the first and the last left out), i.e. without the start-up.
(c) group photos end to end: --wild-photos photos of 1600x1000, each with 8 REAL faces pasted at
    8-80 px between the eyes (benchmarks/detector_recall.py's composites of the face-recognition
    test photos), through `python -m pipelines.sanitize --faces wild` once per --wild-runs
    (by default CenterFace in float32, in int8, and in int8 with the sanitizer in bfloat16; sanitize,
    paste back; the faces it found are printed), and through `deface` (CenterFace, blur) on the same
    files. deface is installed by this script into a throwaway virtual environment (uv, from PyPI;
    --skip-deface to leave it out); its start-up is measured by running it on one photo, and its
    photos/s without it beside the job's pipeline photos/s (the job's progress lines come every 32
    inputs per worker, too coarse for a rate while sanitizing over a few hundred photos).
(d) where an aligned face's time goes besides the model: each step of the job in this process on
    one core, without Beam (stage_costs), beside the model's time per face from (a).
(e) the job's rate while sanitizing against raw, split into two measured shares (cpu_split): the
    CPU the model takes of the job's CPU per image (the job's process tree, sampled every 0.2 s,
    over the window of the "while sanitizing" rate; the model's from (a), summed over threads), and
    the cores the job keeps busy against those the raw model keeps busy.

The model is the real sanitizer architecture (--architecture: residual, the default, or the
paper's SAN) at S (default 224), untrained (speed does not depend on the weights). The aligned
faces are the SYNTHETIC CelebA-style faces of components.synthetic, eye-aligned to S by
imaging.align_face, each copy with its own brightness and noise.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def export_model(path: str, size: int, architecture: str = "residual") -> str:
    import tensorflow as tf

    from trainer.export import SanitizerModule, save_sanitizer
    from trainer.models import build_gender_classifier, build_sanitizer, reduced_precision_networks

    tf.keras.utils.set_random_seed(0)
    prototypes = {name: tf.fill((size, size, 3), value) for name, value in
                  (("male", 0.9), ("female", 0.1), ("neutral", 0.5))}
    san, classifier = build_sanitizer(architecture, size), build_gender_classifier(size)
    reduced = reduced_precision_networks(lambda: build_sanitizer(architecture, size), san, classifier, size,
                                         ("bfloat16",))
    module = SanitizerModule(san, classifier, prototypes, size, reduced)
    save_sanitizer(module, path, metadata={"note": "untrained, benchmark only"})
    return path


def make_faces(folder: str, count: int, size: int, seed: int = 0) -> None:
    """`count` aligned SxS JPEG faces (SYNTHETIC), from 48 generated faces with per-copy variation."""
    from PIL import Image

    from components.celeba import layout as fmt
    from components.synthetic import celeba_layout as synthetic_celeba
    from components.faces.imaging import align_face, celeba_landmark_to_point, decode_image

    raw = os.path.join(folder, "_raw")
    synthetic_celeba.generate(raw, num_identities=12, images_per_identity=4, seed=seed)
    landmarks = {}
    with open(os.path.join(raw, fmt.LANDMARKS_FILE)) as handle:
        for line in handle.read().splitlines()[2:]:
            parts = line.split()
            landmarks[parts[0]] = [int(v) for v in parts[1:5]]
    bases = []
    for name, values in sorted(landmarks.items()):
        with open(os.path.join(raw, fmt.IMAGES_DIR, name), "rb") as handle:
            pixels = decode_image(handle.read()).pixels
        bases.append(align_face(pixels, celeba_landmark_to_point(*values[:2]), celeba_landmark_to_point(*values[2:4]),
                                size).astype(np.float32))
    faces = os.path.join(folder, "faces")
    os.makedirs(faces, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        base = bases[index % len(bases)]
        image = base * rng.uniform(0.85, 1.15) + rng.normal(0, 4, base.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        with open(os.path.join(faces, f"{index:06d}.jpg"), "wb") as handle:
            handle.write(buffer.getvalue())


def raw_throughput(model_dir: str, size: int, batch: int, seconds: float,
                   signature: str = "sanitize_only") -> tuple[float, float]:
    """(images/s, CPU milliseconds per image summed over this process's threads) of the signature."""
    import tensorflow as tf

    model = tf.saved_model.load(model_dir)
    sanitize = model.signatures[signature]
    faces = tf.constant(np.random.default_rng(0).uniform(0, 1, (batch, size, size, 1)).astype(np.float32))
    warm = time.perf_counter()
    for calls in itertools.count():  # the first calls build kernels and caches: 2 calls and 3 s before timing
        sanitize(faces=faces)["sanitized"].numpy()
        if calls >= 1 and time.perf_counter() - warm > 3.0:
            break
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        sanitize(faces=faces)["sanitized"].numpy()
        done += batch
    return done / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / done


@dataclass
class Measured:
    output: str
    wall_s: float
    peak_rss_mib: float
    lines: list  # (seconds since the start, line) as the command printed them
    cpu: list  # (seconds since the start, CPU seconds of the process tree so far), every 0.2 s


def measured(command: list[str], env: dict | None = None) -> Measured:
    """One command's output (each line with the time it came), wall seconds, peak summed RSS of
    its process tree, and the tree's CPU seconds over time (its live processes' user and system
    time, and that of the children they have waited for)."""
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env or dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1"))
    peak, cpu = [0], []

    def sample():
        root = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()))
                times = [p.cpu_times() for p in tree]
                cpu.append((time.perf_counter() - started,
                            sum(t.user + t.system + t.children_user + t.children_system for t in times)))
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = [(time.perf_counter() - started, line.rstrip("\n")) for line in process.stdout]
    process.wait()
    wall = time.perf_counter() - started
    sampler.join()
    output_text = "\n".join(line for _, line in lines)
    if process.returncode:
        raise SystemExit(f"failed ({' '.join(command)}):\n{output_text[-4000:]}")
    return Measured(output_text, wall, peak[0] / 2**20, lines, cpu)


def stage_costs(folder: str, size: int, count: int = 300) -> dict:
    """Milliseconds per aligned face of each step the job takes besides the model, in this process
    on one core (no Beam): read, decode, align (+ gray), decode again (to paste back; the job skips
    it for photos up to CARRY_DECODED_PIXELS), paste back (a small made-up change), re-encode, write
    atomically. The first face's paste builds the
    cached placement and is left out. numpy's BLAS runs on one thread, as in the job
    (pipelines/sanitize/faces.py:one_blas_thread)."""
    from threadpoolctl import threadpool_limits

    from components.faces.imaging import align_face, decode_image, encode_like, paste_face, to_gray_float
    from pipelines.sanitize.faces import CARRY_DECODED_PIXELS
    from pipelines.sanitize.layout import write_atomically

    files = sorted(os.listdir(folder))[:count + 1]
    eyes = ((0.35 * size, 0.40 * size), (0.65 * size, 0.40 * size))
    totals = dict.fromkeys(("read", "decode", "align", "decode again", "paste back", "encode", "write"), 0.0)
    with tempfile.TemporaryDirectory() as out, threadpool_limits(limits=1, user_api="blas"):
        for index, name in enumerate(files):
            marks = [time.perf_counter()]
            with open(os.path.join(folder, name), "rb") as handle:
                data = handle.read()
            marks.append(time.perf_counter())
            pixels = decode_image(data).pixels
            marks.append(time.perf_counter())
            face = to_gray_float(align_face(pixels, *eyes, size))
            marks.append(time.perf_counter())
            # the job keeps a small photo decoded for the paste-back (faces.CARRY_DECODED_PIXELS)
            again = pixels if pixels.shape[0] * pixels.shape[1] <= CARRY_DECODED_PIXELS else decode_image(data).pixels
            marks.append(time.perf_counter())
            pasted = paste_face(again, np.clip(face + 0.03, 0, 1), face, *eyes, None)
            marks.append(time.perf_counter())
            encoded = encode_like(pasted, "JPEG", 95)
            marks.append(time.perf_counter())
            write_atomically(os.path.join(out, "images", name), encoded, os.path.join(out, "tmp"))
            marks.append(time.perf_counter())
            if index:
                for step, start, end in zip(totals, marks, marks[1:]):
                    totals[step] += end - start
    return {step: 1000 * seconds / (len(files) - 1) for step, seconds in totals.items()}


def run_job(model_dir: str, inputs: str, output: str, batch: int, workers: int, mode: str,
            extra: tuple = ("--aligned-eyes", "0.35", "0.40", "0.65", "0.40")) -> dict:
    command = [sys.executable, "-m", "pipelines.sanitize", "--model", model_dir, "--input", inputs, "--output", output,
               "--batch-size", str(batch), "--progress-every", "5", *extra,
               f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    run = measured(command)
    output_text, wall, peak = run.output, run.wall_s, run.peak_rss_mib
    match = re.search(r"this run: (\d+) inputs processed in ([\d.]+) s", output_text)
    processed, seconds = int(match.group(1)), float(match.group(2))
    faces = re.search(r"(\d+) faces sanitized", output_text)
    return {"images": processed, "pipeline_s": seconds, "wall_s": round(wall, 1),
            "faces_sanitized": int(faces.group(1)) if faces else None,
            "images_per_s": processed / seconds, "peak_rss_mib": peak,
            "while_sanitizing_per_s": while_sanitizing(output_text),
            "cpu_while_sanitizing": cpu_while_sanitizing(run.lines, run.cpu),
            "progress_lines": [line for line in output_text.splitlines() if line.startswith(("progress", "inputs"))]}


def cpu_while_sanitizing(lines: list, cpu: list) -> dict | None:
    """CPU milliseconds per input and the share of the machine's cores busy while the job sanitizes:
    over the window of while_sanitizing (from the first progress line to the second-to-last), the
    process tree's CPU seconds (its sample nearest each line's time) over the inputs finished in
    it. None for a run too short to have three progress lines or without CPU samples."""
    marks = [(at, int(match.group(1))) for at, line in lines
             if (match := re.match(r"progress: (\d+) inputs finished this run.*/s now", line))]
    if len(marks) < 3 or not cpu:
        return None
    (start, first), (end, last) = marks[0], marks[-2]

    def cpu_at(moment):
        return min(cpu, key=lambda sample: abs(sample[0] - moment))[1]

    if last <= first or end <= start:
        return None
    used = cpu_at(end) - cpu_at(start)
    return {"cpu_ms_per_input": 1000 * used / (last - first), "busy_cores": used / (end - start),
            "cores": os.cpu_count(), "inputs": last - first, "seconds": end - start}


def cpu_split(job: dict | None, raw_per_s: float, raw_cpu_ms: float) -> dict | None:
    """The job's rate while sanitizing against the raw model's, as the product of two shares:
    job/raw = (raw CPU per image / job CPU per image) x (job's busy cores / raw model's busy cores),
    since a rate is busy cores over CPU seconds per image. The first share is what the rest of the
    job (decode, align, paste back, encode, write, Beam) costs beside the model; the second, the
    cores it leaves idle (the GIL, waiting between stages)."""
    if not job:
        return None
    raw_busy = raw_per_s * raw_cpu_ms / 1000
    return {"job_cpu_ms": job["cpu_ms_per_input"], "model_cpu_ms": raw_cpu_ms,
            "rest_cpu_ms": job["cpu_ms_per_input"] - raw_cpu_ms, "job_busy_cores": job["busy_cores"],
            "raw_busy_cores": raw_busy, "cores": job["cores"], "cpu_share": raw_cpu_ms / job["cpu_ms_per_input"],
            "busy_share": job["busy_cores"] / raw_busy}


def while_sanitizing(output_text: str) -> float | None:
    """Images/s once the job is under way: the mean of its progress lines' "now" rates (one every 5
    s), leaving out the first (worker start and model load) and the last (a part interval); None
    for a run too short to have three."""
    rates = [float(rate) for rate in re.findall(r"^progress: \d+ inputs finished this run.*?, ([\d.]+)/s now",
                                                output_text, flags=re.M)]
    return sum(rates[1:-1]) / len(rates[1:-1]) if len(rates) >= 3 else None


def make_group_photos(folder: str, count: int, seed: int = 0) -> int:
    """`count` 1600x1000 JPEG group photos of 8 REAL faces each (detector_recall.group_photo)."""
    from PIL import Image

    from benchmarks.detector_recall import _sources, group_photo
    from components.faces.detection import FaceFinder

    os.makedirs(folder, exist_ok=True)
    sources = _sources(FaceFinder(upsample=1, detect_max_side=1 << 30))
    rng = np.random.default_rng(seed)
    faces = 0
    for index in range(count):
        pixels, truth = group_photo(sources, rng)
        Image.fromarray(pixels).save(os.path.join(folder, f"group{index:04d}.jpg"), quality=92)
        faces += len(truth)
    return faces


def deface_environment(work: str) -> str:
    """A throwaway virtual environment with deface (and ONNX Runtime, its fast backend); its deface."""
    env = os.path.join(work, "deface-env")
    python = os.path.join(sys.base_prefix, "bin", "python3")
    subprocess.run(["uv", "venv", "-q", env, "--python", python], check=True)
    subprocess.run(["uv", "pip", "install", "-q", "--python", os.path.join(env, "bin", "python"), "deface",
                    "onnx", "onnxruntime"], check=True)  # its onnxrt backend imports onnx too
    return os.path.join(env, "bin", "deface")


def run_deface(deface: str, photos: str, output: str) -> dict:
    os.makedirs(output, exist_ok=True)
    files = sorted(os.path.join(photos, name) for name in os.listdir(photos))
    # deface writes <name>_anonymized.jpg beside each input unless told: one call per photo would
    # pay its start-up each time, so copy the inputs where the outputs may go and pass them all.
    for path in files:
        os.link(path, os.path.join(output, os.path.basename(path)))
    inputs = [os.path.join(output, os.path.basename(path)) for path in files]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = measured([deface, "--backend", "onnxrt", *inputs], env=env)
    wall, peak = run.wall_s, run.peak_rss_mib
    written = [name for name in os.listdir(output) if "_anonymized" in name]
    if len(written) != len(files):
        raise SystemExit(f"deface wrote {len(written)} of {len(files)} photos")
    return {"images": len(files), "wall_s": round(wall, 1), "images_per_s": len(files) / wall, "peak_rss_mib": peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--architecture", choices=("residual", "paper"), default="residual")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000],
                        help="database sizes (images) for (b); none: leave (b) out")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=("multi_threading", "multi_processing"), default="multi_threading",
                        help="DirectRunner running mode of the job (default: the job's own local default)")
    parser.add_argument("--raw-seconds", type=float, default=30.0)
    parser.add_argument("--raw-threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads for (a); 0: TensorFlow's default (all cores). "
                             "1 shows what one multi_processing worker (cores / workers threads) gets")
    parser.add_argument("--raw-only", action="store_true", help="measure (a) only")
    parser.add_argument("--wild-photos", type=int, default=60, help="group photos for (c); 0 leaves (c) out")
    parser.add_argument("--skip-deface", action="store_true", help="(c) without deface")
    parser.add_argument("--wild-runs", nargs="+",
                        default=["centerface", "centerface-int8", "centerface-int8:bfloat16"],
                        help="(c): the job once for each DETECTOR[:PRECISION] (--detector, --precision; "
                             "default %(default)s)")
    parser.add_argument("--work-dir", default=None, help="default: a temporary folder, removed afterwards")
    args = parser.parse_args(argv)
    from pipelines.sanitize.faces import DETECTORS

    for run in args.wild_runs:
        detector, _, precision = run.partition(":")
        if detector not in DETECTORS or precision not in ("", "float32", "bfloat16", "float16"):
            raise SystemExit(f"--wild-runs {run}: DETECTOR[:PRECISION], DETECTOR one of {', '.join(DETECTORS)} and "
                             "PRECISION one of float32, bfloat16, float16")
    if args.raw_threads:  # before TensorFlow starts its thread pools
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.raw_threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.raw_threads)

    report = {"architecture": args.architecture, "image_size": args.image_size, "batch_size": args.batch_size,
              "mode": args.mode, "workers": args.workers}
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        model_dir = export_model(os.path.join(work, "model", "1"), args.image_size, args.architecture)
        raw_costs = {name: raw_throughput(model_dir, args.image_size, args.batch_size, args.raw_seconds, name)
                     for name in ("sanitize_only", "sanitize_only_bfloat16", "sanitize_faces")}
        raw = {name: rate for name, (rate, _) in raw_costs.items()}
        raw_cpu_ms = {name: cpu_ms for name, (_, cpu_ms) in raw_costs.items()}
        report["raw_images_per_s"] = raw
        report["raw_cpu_ms_per_image"] = raw_cpu_ms
        print(f"(a) raw forward, {args.architecture}, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
              f"TensorFlow threads {args.raw_threads or 'default'}: float32 {raw['sanitize_only']:.1f} images/s, "
              f"bfloat16 {raw['sanitize_only_bfloat16']:.1f} ({raw['sanitize_only_bfloat16'] / raw['sanitize_only']:.2f}x), "
              f"full sanitize_faces (evaluator's) {raw['sanitize_faces']:.1f}", flush=True)
        if args.raw_only:
            print(json.dumps(report, indent=2))
            return 0
        largest = max(args.sizes, default=0)
        if largest:
            print(f"writing {largest} aligned {args.image_size}x{args.image_size} SYNTHETIC faces ...", flush=True)
            make_faces(os.path.join(work, "db"), largest, args.image_size)
        results, latest = {}, dict(raw_costs)
        runs = [(size, "float32") for size in sorted(args.sizes)] + [(min(args.sizes), "bfloat16")] if largest else []
        for size, precision in runs:
            folder = os.path.join(work, f"db_{size}")
            if not os.path.isdir(folder):
                os.makedirs(folder)
                for index in range(size):  # a database of `size` images (hard links, no copies)
                    os.link(os.path.join(work, "db", "faces", f"{index:06d}.jpg"),
                            os.path.join(folder, f"{index:06d}.jpg"))
            result = run_job(model_dir, folder, os.path.join(work, f"out_{size}_{precision}"), args.batch_size,
                             args.workers, args.mode,
                             ("--aligned-eyes", "0.35", "0.40", "0.65", "0.40", "--precision", precision))
            # The machine's speed drifts over minutes (README, "Performance"): the raw model is measured
            # again right after each job, and the job is compared with the two raw runs around it.
            name = "sanitize_only" if precision == "float32" else "sanitize_only_bfloat16"
            before, after = latest[name], raw_throughput(model_dir, args.image_size, args.batch_size,
                                                         args.raw_seconds, name)
            latest[name] = after
            raw_same, raw_cpu_same = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
            results[f"{size} {precision}"] = dict(
                result, raw_before_per_s=before[0], raw_after_per_s=after[0], raw_per_s=raw_same,
                raw_cpu_ms_per_image=raw_cpu_same, ratio_to_raw=result["images_per_s"] / raw_same)
            steady = result["while_sanitizing_per_s"]
            print(f"(b) aligned faces end to end, {size} images, {precision}, DirectRunner {args.mode} {args.workers} "
                  f"workers: {result['images_per_s']:.1f} images/s (pipeline {result['pipeline_s']:.1f} s, command "
                  f"wall {result['wall_s']:.1f} s), ratio to raw {precision} {result['images_per_s'] / raw_same:.2f} "
                  f"(raw just before and after: {before[0]:.1f} and {after[0]:.1f} images/s); "
                  + (f"while sanitizing {steady:.1f} images/s, ratio {steady / raw_same:.2f}; " if steady else "")
                  + f"peak memory {result['peak_rss_mib']:.0f} MiB", flush=True)
        report["aligned_end_to_end"] = {k: {n: v for n, v in r.items() if n != "progress_lines"}
                                        for k, r in results.items()}
        if largest:
            costs = stage_costs(os.path.join(work, "db", "faces"), args.image_size)
            report["per_face_ms"] = dict(costs, model_float32=1000 / raw["sanitize_only"])
            print("(d) per aligned face in this process, ms (one core, no Beam; the model: 1 / raw float32, both "
                  "cores): " + ", ".join(f"{step} {ms:.2f}" for step, ms in costs.items())
                  + f"; all but the model {sum(costs.values()):.2f}; the model {1000 / raw['sanitize_only']:.2f}",
                  flush=True)
            for key, result in results.items():
                size, precision = key.split()
                split = cpu_split(result["cpu_while_sanitizing"], result["raw_per_s"], result["raw_cpu_ms_per_image"])
                if split is None:
                    continue
                report["aligned_end_to_end"][key]["cpu_split"] = split
                print(f"(e) CPU while sanitizing, {size} images, {precision}: the job {split['job_cpu_ms']:.2f} ms "
                      f"per image summed over its threads, the model alone (raw) {split['model_cpu_ms']:.2f} ms, so "
                      f"the rest of the job {split['rest_cpu_ms']:.2f} ms; cores busy: the job "
                      f"{split['job_busy_cores']:.2f}, the raw model {split['raw_busy_cores']:.2f} of "
                      f"{split['cores']}; ratio to raw while sanitizing = CPU share {split['cpu_share']:.2f} x busy "
                      f"share {split['busy_share']:.2f} = {split['cpu_share'] * split['busy_share']:.2f}", flush=True)
        if args.wild_photos:
            photos = os.path.join(work, "group_photos")
            faces = make_group_photos(photos, args.wild_photos)
            runs = [(run.partition(":")[0], run.partition(":")[2] or "float32") for run in args.wild_runs]
            if any(detector == "centerface-int8" for detector, _ in runs):
                from components.faces.centerface import int8_model_path

                int8_model_path()  # quantized once per machine, before the timed job (the image build does it)
            report["wild_end_to_end"] = {}
            for detector, precision in runs:
                label = f"--detector {detector} --precision {precision}"
                ours = run_job(model_dir, photos, os.path.join(work, f"out_wild_{detector}_{precision}"),
                               args.batch_size, args.workers, args.mode,
                               ("--faces", "wild", "--detector", detector, "--precision", precision))
                report["wild_end_to_end"][label] = {"photos": args.wild_photos, "faces_pasted": faces,
                                                    **{k: v for k, v in ours.items() if k != "progress_lines"}}
                print(f"(c) group photos end to end ({args.wild_photos} photos of 1600x1000, {faces} REAL faces "
                      f"pasted), {label}: facesan --faces wild found and sanitized "
                      f"{ours['faces_sanitized']} faces, {ours['images_per_s']:.2f} photos/s (pipeline "
                      f"{ours['pipeline_s']:.1f} s, command wall {ours['wall_s']:.1f} s), peak memory "
                      f"{ours['peak_rss_mib']:.0f} MiB", flush=True)
            if not args.skip_deface:
                deface = deface_environment(work)
                theirs = run_deface(deface, photos, os.path.join(work, "out_deface"))
                # deface's start-up: the same command on one photo; the rest is its time per photo
                one = os.path.join(work, "one_photo")
                os.makedirs(one, exist_ok=True)
                first = sorted(os.listdir(photos))[0]
                os.link(os.path.join(photos, first), os.path.join(one, first))
                alone = run_deface(deface, one, os.path.join(work, "out_deface_one"))
                theirs["without_start_up_per_s"] = (args.wild_photos - 1) / max(theirs["wall_s"] - alone["wall_s"],
                                                                                1e-9)
                report["deface"] = theirs
                print(f"(c) deface (CenterFace + blur, onnxrt) on the same photos: {theirs['images_per_s']:.2f} "
                      f"photos/s (command wall {theirs['wall_s']:.1f} s, its start-up included), peak memory "
                      f"{theirs['peak_rss_mib']:.0f} MiB; deface without its start-up (one photo took "
                      f"{alone['wall_s']:.1f} s): {theirs['without_start_up_per_s']:.2f} photos/s", flush=True)
                for label, ours in report["wild_end_to_end"].items():
                    print(f"(c) {label} ({ours['faces_sanitized']} faces found): facesan command wall "
                          f"/ deface command wall {ours['wall_s'] / theirs['wall_s']:.2f}; facesan's pipeline (its "
                          f"workers' start and model load included) / deface without its start-up "
                          f"{ours['images_per_s'] / theirs['without_start_up_per_s']:.2f}", flush=True)
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
