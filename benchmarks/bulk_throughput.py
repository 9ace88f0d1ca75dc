"""Bulk job throughput against the model's own forward throughput, and peak memory at two sizes.

    bash infra/with-env.sh python benchmarks/bulk_throughput.py --sizes 1000 10000

In one run, on this machine:
(a) raw: the exported sanitizer's `sanitize_faces` signature on batches of aligned SxS gray faces,
    in this process (TensorFlow uses all cores);
(b) end to end: `python -m pipelines.sanitize` (DirectRunner, --mode multi_threading (the job's local
    default) or multi_processing, --workers 2) over a
    folder of aligned SxS JPEG faces (--aligned-eyes 0.35 0.40 0.65 0.40, the pipeline's alignment,
    so the crop is the image): list, decode, align, RunInference, warp back, re-encode, write,
    manifest. Throughput = images / seconds of the sanitize pipeline (the job's own figure, worker
    start and model load included; the one-off driver import and manifest consolidation are
    reported separately in the wall time);
peak memory = the largest sum of resident memory over the job's process tree (driver + workers),
sampled every 0.2 s, at each database size.

The model is the real SAN architecture at S (default 224), untrained (speed does not depend on
the weights). The faces are the SYNTHETIC CelebA-style faces of components.synthetic_celeba,
eye-aligned to S by imaging.align_face, each copy with its own brightness and noise.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def export_model(path: str, size: int) -> str:
    import tensorflow as tf

    from trainer.export import SanitizerModule, save_sanitizer
    from trainer.models import SemiAdversarialNetwork, build_gender_classifier

    tf.keras.utils.set_random_seed(0)
    prototypes = {name: tf.fill((size, size, 3), value) for name, value in
                  (("male", 0.9), ("female", 0.1), ("neutral", 0.5))}
    module = SanitizerModule(SemiAdversarialNetwork(size), build_gender_classifier(size), prototypes, size)
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


def raw_throughput(model_dir: str, size: int, batch: int, seconds: float) -> float:
    import tensorflow as tf

    model = tf.saved_model.load(model_dir)
    sanitize = model.signatures["sanitize_faces"]
    faces = tf.constant(np.random.default_rng(0).uniform(0, 1, (batch, size, size, 1)).astype(np.float32))
    for _ in range(2):
        sanitize(faces=faces)["sanitized"].numpy()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sanitize(faces=faces)["sanitized"].numpy()
        done += batch
    return done / (time.perf_counter() - start)


def run_job(model_dir: str, faces: str, output: str, batch: int, workers: int, mode: str) -> dict:
    import psutil

    command = [sys.executable, "-m", "pipelines.sanitize", "--model", model_dir, "--input", faces, "--output", output,
               "--aligned-eyes", "0.35", "0.40", "0.65", "0.40", "--batch-size", str(batch), "--progress-every", "30",
               f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, PYTHONPATH=REPO))
    peak = [0]

    def sample():
        root = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output_text = process.communicate()[0]
    wall = time.perf_counter() - started
    sampler.join()
    if process.returncode:
        raise SystemExit(f"the job failed ({' '.join(command)}):\n{output_text[-4000:]}")
    match = re.search(r"this run: (\d+) inputs processed in ([\d.]+) s", output_text)
    processed, seconds = int(match.group(1)), float(match.group(2))
    return {"images": processed, "pipeline_s": seconds, "wall_s": round(wall, 1),
            "images_per_s": processed / seconds, "peak_rss_mib": peak[0] / 2**20,
            "progress_lines": [line for line in output_text.splitlines() if line.startswith(("progress", "inputs"))]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="database sizes (images)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=("multi_threading", "multi_processing"), default="multi_threading",
                        help="DirectRunner running mode of the job (default: the job's own local default)")
    parser.add_argument("--raw-seconds", type=float, default=30.0)
    parser.add_argument("--raw-threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads for (a); 0: TensorFlow's default (all cores). "
                             "1 shows what one multi_processing worker (cores / workers threads) gets")
    parser.add_argument("--raw-only", action="store_true", help="measure (a) only")
    parser.add_argument("--work-dir", default=None, help="default: a temporary folder, removed afterwards")
    args = parser.parse_args(argv)
    if args.raw_threads:  # before TensorFlow starts its thread pools
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.raw_threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.raw_threads)

    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        model_dir = export_model(os.path.join(work, "model", "1"), args.image_size)
        if args.raw_only:
            raw = raw_throughput(model_dir, args.image_size, args.batch_size, args.raw_seconds)
            print(f"(a) raw model forward, batch {args.batch_size}, {args.image_size}x{args.image_size}, TensorFlow "
                  f"threads {args.raw_threads or 'default'}: {raw:.1f} images/s", flush=True)
            return 0
        largest = max(args.sizes)
        print(f"writing {largest} aligned {args.image_size}x{args.image_size} SYNTHETIC faces ...", flush=True)
        make_faces(os.path.join(work, "db"), largest, args.image_size)
        raw = raw_throughput(model_dir, args.image_size, args.batch_size, args.raw_seconds)
        print(f"(a) raw model forward, batch {args.batch_size}, {args.image_size}x{args.image_size}: "
              f"{raw:.1f} images/s", flush=True)
        results = {}
        for size in sorted(args.sizes):
            folder = os.path.join(work, f"db_{size}")
            os.makedirs(folder)
            for index in range(size):  # a database of `size` images (hard links, no copies)
                os.link(os.path.join(work, "db", "faces", f"{index:06d}.jpg"), os.path.join(folder, f"{index:06d}.jpg"))
            result = run_job(model_dir, folder, os.path.join(work, f"out_{size}"), args.batch_size, args.workers,
                             args.mode)
            results[size] = result
            print(f"(b) end to end, {size} images, DirectRunner {args.mode} {args.workers} workers: "
                  f"{result['images_per_s']:.1f} images/s (pipeline {result['pipeline_s']:.1f} s, command wall "
                  f"{result['wall_s']:.1f} s), ratio to raw {result['images_per_s'] / raw:.2f}, peak memory "
                  f"{result['peak_rss_mib']:.0f} MiB", flush=True)
        print(json.dumps({"image_size": args.image_size, "batch_size": args.batch_size, "mode": args.mode,
                          "workers": args.workers, "raw_images_per_s": raw,
                          "end_to_end": {size: {k: v for k, v in r.items() if k != "progress_lines"}
                                         for size, r in results.items()},
                          "ratio_at_largest": results[largest]["images_per_s"] / raw}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
