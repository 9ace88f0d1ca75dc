"""GPU throughput of the sanitizer networks at 224x224, measured in PyTorch through ONNX (a proxy).

WHAT THE NUMBERS ARE: the compute of this project's networks (same layers, same shapes, random
weights), run by PyTorch on a GPU. They are NOT the product's TensorFlow trainer or its TensorFlow
serving signatures: the GPU machine this is meant for has no TensorFlow and cannot get it
(TensorFlow's wheels plus the CUDA 12 libraries it needs are about 2.5 GB; what can be carried there
is 64 MiB), so the networks are exported to ONNX here and rebuilt in PyTorch there with onnx2torch.
Kernel choice, fusion, memory layout and input pipelines differ between the two frameworks: read
the figures as "what these networks cost on this GPU", not as a TensorFlow measurement.

Two subcommands:

convert  (here, with TensorFlow, in a throwaway virtualenv, not the project's .venv):

    uv venv /tmp/gpu_work/venv --python "$(pyenv root)"/versions/3.10.13/bin/python
    uv pip install --python /tmp/gpu_work/venv/bin/python tensorflow-cpu==2.16.2 tf_keras==2.16.0 \\
        tf2onnx==1.17.0 onnx==1.17.0 "numpy<2" protobuf==3.20.3
    TF_USE_LEGACY_KERAS=1 PYTHONPATH=/work/main /tmp/gpu_work/venv/bin/python \\
        benchmarks/gpu_torch_proxy.py convert --out /tmp/gpu_work/onnx

  Builds, with trainer/models.py's own builders at image size 224 and seeded random weights:
  - residual_sanitizer.onnx: ResidualSanitizer.sanitized_only (the default architecture's serving
    path and its training forward): face [N,1,224,224] float32 in [0,1], target [N] float32
    (P(male) wanted; in serving it is hashed_targets(face), a 16x16 thumbnail fingerprint that is
    not an ONNX op and costs next to nothing, so it is an input here) -> sanitized [N,1,224,224];
  - paper_sanitizer.onnx: SemiAdversarialNetwork.sanitized_only (the paper's SAN, lean X'_OP
    path): face, male [N] int64 -> sanitized; the three gender prototypes are baked in as
    constants, as in the exported SavedModel. Serving also runs the gender classifier first to get
    `male`: `measure` times that composition too (paper+classifier);
  - paper_training.onnx: SemiAdversarialNetwork.call (what the SanTrainer differentiates for the
    paper's SAN): face, male -> same, neutral, opposite (X'_SM, X'_NT, X'_OP, one autoencoder pass
    with its S x S x 128 decoder map, three proto-combiner outputs);
  - gender_classifier.onnx: build_gender_classifier(224): face -> probabilities [N,2] (female, male);
  - face_matcher.onnx: build_face_matcher(224): face -> unit embedding [N,128].
  Faces are NCHW in the ONNX graphs (one channel, so the same bytes as the models' NHWC). Weights
  are rounded to float16-representable values before export, and every initializer that float16
  holds exactly is stored as float16 in the file (listed in the model's metadata
  "fp16_initializers"; `measure` turns them back into float32, exactly) to keep the folder small.
  samples.npz holds a small input batch and TensorFlow's outputs for it, for the agreement check.

measure  (there: Python 3.12, torch + CUDA, numpy, onnx, onnx2torch; no TensorFlow needed):

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_torch_proxy.py measure --onnx-dir .gpu_onnx \\
        --device cuda --json $OUT/gpu_proxy.json
    # on a CPU, for a quick end-to-end test: ... measure --onnx-dir DIR --device cpu

  Converts each .onnx with onnx2torch, checks it against TensorFlow's outputs on the sample batch
  (max abs difference, float32 with TF32 off; fails if above --tolerance, default 1e-3), then times:
  a. inference images/s of the lean sanitizers (residual, paper, paper+classifier as served), batch
     64 and 256, fp32 (TF32 allowed for convolutions and matmuls, as TensorFlow does by default on
     GPUs), bf16 and fp16 autocast;
  b. training-step compute proxies, fp32, bf16 and fp16 autocast (fp16 with a GradScaler, as Keras'
     mixed_float16, which the Trainer picks on a GPU, scales the loss), batch 64 and 256, each
     backward to the sanitizer's weights and an Adam update:
     - residual (the default architecture): sanitizer forward, the frozen gender classifier on its
       (shifted, noised) output, the frozen matcher on the output and on the input, loss = L1
       reconstruction + cross-entropy of P(male) against the target + squared distance of the unit
       embeddings (trainer/losses.py's terms; only the compute matters here);
     - paper (the paper's SAN): the full forward (X'_SM, X'_NT, X'_OP), L1 reconstruction and the
       matcher on X'_SM, the frozen classifier on X'_SM (own gender) and on X'_OP (the other).
     Not included: the two small pooled ensemble classifiers and TensorFlow's input pipeline.
  Prints a table and writes it as JSON (--json, default $OUT/gpu_proxy.json when OUT is set).
  --compile adds torch.compile'd inference rows for the lean sanitizers (off by default: it can
  take a minute per shape, and with onnx2torch 1.5.15 TorchDynamo fails on its Reshape converter,
  "torch.Size() takes an iterable of 'int'", seen with torch 2.14 on a CPU; failures are reported
  as rows and the run goes on).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

IMAGE_SIZE = 224
SEED = 1234
SAMPLE_BATCH = 4
MODELS = ("residual_sanitizer", "paper_sanitizer", "paper_training", "gender_classifier", "face_matcher")


def log(*parts) -> None:
    print(*parts, flush=True)


# --------------------------------------------------------------------------------------------
# convert (TensorFlow side)
# --------------------------------------------------------------------------------------------

def _randomize_weights(model, rng) -> None:
    """Seeded random weights, rounded to float16-representable values (so float16 storage in the
    ONNX file is exact). He-scaled kernels keep activations in a sane range through the layers;
    the residual editor's zero-initialised last layer gets weights too, so its output changes."""
    import numpy as np

    values = []
    for weight in model.weights:
        shape = tuple(weight.shape)
        name = weight.name
        if "moving_variance" in name:
            value = rng.uniform(0.5, 1.5, shape)
        elif "gamma" in name:
            value = rng.uniform(0.8, 1.2, shape)
        elif "moving_mean" in name or "beta" in name or "bias" in name:
            value = rng.normal(0.0, 0.05, shape)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
        else:
            value = rng.normal(0.0, 0.05, shape)
        values.append(value.astype(np.float16).astype(np.float32))
    model.set_weights(values)


def _store_fp16(model_proto) -> tuple[int, int]:
    """Initializers that float16 holds exactly -> stored as float16; their names in metadata."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    names, saved = [], 0
    for index, init in enumerate(model_proto.graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        if array.size < 1024:
            continue
        half = array.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), array):
            continue
        model_proto.graph.initializer[index].CopyFrom(numpy_helper.from_array(half, init.name))
        names.append(init.name)
        saved += array.size * 2
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = "fp16_initializers", json.dumps(names)
    return len(names), saved


def convert(args) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, repo)
    import numpy as np
    import onnx
    import tensorflow as tf
    import tf2onnx
    import tf_keras as keras

    # trainer.models only: it imports tensorflow and tf_keras, nothing of TFX / tf.Transform.
    from trainer.models import (build_face_matcher, build_gender_classifier, build_sanitizer,
                                prototypes_for_labels)

    size = args.image_size
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)

    residual = build_sanitizer("residual", size)
    paper = build_sanitizer("paper", size)
    classifier = build_gender_classifier(size)
    matcher = build_face_matcher(size)
    for model in (residual, paper, classifier, matcher):
        _randomize_weights(model, rng)
    prototypes = {name: tf.Variable(rng.uniform(0.0, 1.0, (size, size, 3)).astype(np.float16).astype(np.float32),
                                    trainable=False,
                                    name=f"prototype_{name}") for name in ("male", "female", "neutral")}
    counts = {"residual_sanitizer": residual, "paper_sanitizer": paper, "paper_training": paper,
              "gender_classifier": classifier, "face_matcher": matcher}
    trainable = {name: int(sum(np.prod(w.shape) for w in model.trainable_weights)) for name, model in counts.items()}

    face_spec = tf.TensorSpec([None, 1, size, size], tf.float32, name="face")  # NCHW; C = 1
    to_nhwc = lambda face: tf.reshape(face, [-1, size, size, 1])  # noqa: E731 (same bytes for C = 1)
    to_nchw = lambda image: tf.reshape(image, [-1, 1, size, size])  # noqa: E731

    @tf.function(input_signature=[face_spec, tf.TensorSpec([None], tf.float32, name="target")])
    def residual_fn(face, target):
        return {"sanitized": to_nchw(residual.sanitized_only(to_nhwc(face), None, target))}

    @tf.function(input_signature=[face_spec, tf.TensorSpec([None], tf.int64, name="male")])
    def paper_fn(face, male):
        return {"sanitized": to_nchw(paper.sanitized_only(to_nhwc(face), male, None, prototypes))}

    @tf.function(input_signature=[face_spec, tf.TensorSpec([None], tf.int64, name="male")])
    def paper_training_fn(face, male):  # SemiAdversarialNetwork.call: what the SanTrainer differentiates
        outputs = paper({"face": to_nhwc(face), **prototypes_for_labels(male, prototypes)}, training=True)
        return {name: to_nchw(outputs[name]) for name in ("same", "neutral", "opposite")}

    @tf.function(input_signature=[face_spec])
    def classifier_fn(face):
        return {"probabilities": classifier(to_nhwc(face), training=False)}

    @tf.function(input_signature=[face_spec])
    def matcher_fn(face):
        return {"embedding": matcher(to_nhwc(face), training=False)}

    functions = {"residual_sanitizer": residual_fn, "paper_sanitizer": paper_fn, "paper_training": paper_training_fn,
                 "gender_classifier": classifier_fn, "face_matcher": matcher_fn}
    face = rng.uniform(0.0, 1.0, (SAMPLE_BATCH, 1, size, size)).astype(np.float32)
    target = np.array([0.0, 1.0, 1.0, 0.0][:SAMPLE_BATCH], np.float32)
    male = np.array([1, 0, 1, 0][:SAMPLE_BATCH], np.int64)
    feeds = {"residual_sanitizer": (face, target), "paper_sanitizer": (face, male), "paper_training": (face, male),
             "gender_classifier": (face,), "face_matcher": (face,)}
    samples = {"face": face, "target": target, "male": male}
    manifest = {"image_size": size, "seed": args.seed, "opset": args.opset, "tensorflow": tf.__version__,
                "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "layout": "NCHW (C=1)",
                "models": {}}
    for name, function in functions.items():
        start = time.perf_counter()
        outputs = function(*[tf.constant(x) for x in feeds[name]])
        out_names = sorted(outputs)  # tf.nest's order: the order of the ONNX graph's outputs
        for out_name in out_names:
            samples[f"{name}__{out_name}"] = outputs[out_name].numpy()
        model_proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                                       opset=args.opset)
        inputs = [i.name for i in model_proto.graph.input]
        outputs_names = [o.name for o in model_proto.graph.output]
        n16, saved = _store_fp16(model_proto)
        path = os.path.join(args.out, f"{name}.onnx")
        onnx.save(model_proto, path)
        ops = sorted({node.op_type for node in model_proto.graph.node})
        manifest["models"][name] = {"file": f"{name}.onnx", "inputs": inputs, "outputs": outputs_names,
                                    "tf_outputs": out_names, "tf_trainable_parameters": trainable[name],
                                    "bytes": os.path.getsize(path), "ops": ops}
        log(f"{name}: {os.path.getsize(path) / 2**20:.1f} MiB, inputs {inputs}, outputs {outputs_names}, "
            f"{trainable[name]:,} trainable parameters, {n16} initializers stored as float16 "
            f"({saved / 2**20:.1f} MiB), ops {ops} ({time.perf_counter() - start:.1f} s)")
    np.savez_compressed(os.path.join(args.out, "samples.npz"), **samples)
    with open(os.path.join(args.out, "manifest.json"), "w") as handle:
        json.dump(manifest, handle, indent=2)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    log(f"wrote {args.out}: {total / 2**20:.1f} MiB")


# --------------------------------------------------------------------------------------------
# measure (PyTorch side)
# --------------------------------------------------------------------------------------------

def _load_torch_model(path, device):
    import numpy as np
    import onnx
    import onnx2torch
    from onnx import numpy_helper

    model_proto = onnx.load(path)
    meta = {prop.key: prop.value for prop in model_proto.metadata_props}
    half = set(json.loads(meta.get("fp16_initializers", "[]")))
    for index, init in enumerate(model_proto.graph.initializer):
        if init.name in half:
            array = numpy_helper.to_array(init).astype(np.float32)
            model_proto.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, init.name))
    return onnx2torch.convert(model_proto).to(device).eval()


class _Timer:
    def __init__(self, torch, device):
        self.torch, self.device = torch, device

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def run(self, step, seconds: float, warmup: int):
        """Warm-up, then enough iterations for about `seconds`; returns (iterations, seconds)."""
        for _ in range(warmup):
            step()
        self.sync()
        start = time.perf_counter()
        step()
        self.sync()
        per_iteration = max(time.perf_counter() - start, 1e-6)
        iterations = max(3, math.ceil(seconds / per_iteration))
        start = time.perf_counter()
        for _ in range(iterations):
            step()
        self.sync()
        return iterations, time.perf_counter() - start


def measure(args) -> None:
    from importlib import metadata

    import numpy as np
    import onnx
    import torch

    import warnings

    # Known, harmless onnx2torch notices (its Slice indexing; nearest Resize at an exact 2x scale).
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
    warnings.filterwarnings("ignore", message="Pytorch's nearest neighbor interpolation")
    started = time.perf_counter()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    if on_gpu and not torch.cuda.is_available():
        sys.exit("measure: --device cuda but torch sees no GPU")
    batches = args.batch_sizes or ([64, 256] if on_gpu else [4])
    seconds = args.seconds if args.seconds is not None else (3.0 if on_gpu else 1.0)
    json_path = args.json or (os.path.join(os.environ["OUT"], "gpu_proxy.json") if os.environ.get("OUT") else None)
    torch.manual_seed(args.seed)
    info = {"device": torch.cuda.get_device_name(device) if on_gpu else f"CPU ({os.cpu_count()} cores)",
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if on_gpu else None, "onnx": onnx.__version__,
            "onnx2torch": metadata.version("onnx2torch"), "numpy": np.__version__,
            "python": platform.python_version(), "image_size": None, "timing_window_s": seconds,
            "note": "PyTorch proxy (ONNX -> onnx2torch) of the project's networks with random weights; "
                    "not the TensorFlow trainer or serving"}
    log(f"measure: {info['device']}; torch {torch.__version__} (CUDA {torch.version.cuda}), onnx {onnx.__version__}, "
        f"onnx2torch {info['onnx2torch']}, numpy {np.__version__}, Python {info['python']}")
    with open(os.path.join(args.onnx_dir, "manifest.json")) as handle:
        manifest = json.load(handle)
    size = manifest["image_size"]
    info["image_size"] = size
    samples = np.load(os.path.join(args.onnx_dir, "samples.npz"))

    # Agreement check in strict float32 (no TF32), against TensorFlow's outputs.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    models, agreement = {}, {}
    feeds = {"residual_sanitizer": ("face", "target"), "paper_sanitizer": ("face", "male"),
             "paper_training": ("face", "male"), "gender_classifier": ("face",), "face_matcher": ("face",)}

    def outputs_of(result) -> list:
        return list(result) if isinstance(result, (tuple, list)) else [result]

    for name in MODELS:
        entry = manifest["models"][name]
        start = time.perf_counter()
        model = _load_torch_model(os.path.join(args.onnx_dir, entry["file"]), device)
        models[name] = model
        inputs = [torch.from_numpy(samples[key]).to(device) for key in feeds[name]]
        expected = [samples[f"{name}__{out}"] for out in entry["tf_outputs"]]
        with torch.inference_mode():
            got = [o.float().cpu().numpy() for o in outputs_of(model(*inputs))]
        if [g.shape for g in got] != [e.shape for e in expected]:
            sys.exit(f"measure: {name}: output shapes {[g.shape for g in got]}, "
                     f"TensorFlow's {[e.shape for e in expected]} ({entry['tf_outputs']})")
        diff = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            got = [o.float().cpu().numpy() for o in outputs_of(model(*inputs))]
        diff_bf16 = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))  # informational
        expected = expected[0]
        parameters = sum(p.numel() for p in model.parameters())
        agreement[name] = {"max_abs_diff": diff, "max_abs_diff_bf16_autocast": diff_bf16,
                           "torch_parameters": parameters, "tf_trainable_parameters": entry["tf_trainable_parameters"]}
        log(f"converted {name}: max |torch - tf| = {diff:.2e} (bf16 autocast: {diff_bf16:.2e}) on {len(expected)} samples; "
            f"{parameters:,} torch parameters (TF trainable: {entry['tf_trainable_parameters']:,}); "
            f"{time.perf_counter() - start:.1f} s")
        if not diff <= args.tolerance:
            sys.exit(f"measure: {name} disagrees with TensorFlow: max abs diff {diff:.3e} > {args.tolerance}")
    # Timing: TF32 on, as TensorFlow computes float32 convolutions and matmuls by default on GPUs.
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True

    timer = _Timer(torch, device)
    rows = []

    def autocast(precision):
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=device.type, dtype=dtype, enabled=precision != "fp32")

    def over_budget(label) -> bool:
        if time.perf_counter() - started > args.budget_s:
            log(f"skipped {label}: past the {args.budget_s:.0f} s budget")
            rows.append({"benchmark": label, "skipped": "time budget"})
            return True
        return False

    def record(kind, model_name, precision, batch, step, warmup):
        label = f"{kind} {model_name} {precision} batch {batch}"
        if over_budget(label):
            return
        try:
            iterations, elapsed = timer.run(step, seconds, warmup)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            log(f"{label}: out of GPU memory")
            rows.append({"kind": kind, "model": model_name, "precision": precision, "batch": batch, "error": "OOM"})
            return
        row = {"kind": kind, "model": model_name, "precision": precision, "batch": batch,
               "images_per_s": round(iterations * batch / elapsed, 1),
               "ms_per_iteration": round(1000 * elapsed / iterations, 3), "iterations": iterations}
        rows.append(row)
        log(f"{label}: {row['images_per_s']:,.1f} images/s ({row['ms_per_iteration']:.2f} ms/iteration, "
            f"{iterations} iterations) [{time.perf_counter() - started:.0f} s]")

    residual, paper = models["residual_sanitizer"], models["paper_sanitizer"]
    classifier, matcher = models["gender_classifier"], models["face_matcher"]

    def paper_served(face):  # export.py's sanitize_only for the paper SAN: classifier, then X'_OP
        male = (classifier(face)[:, 1] >= 0.5).long()
        return paper(face, male)

    # a. inference
    for batch in batches:
        face = torch.rand(batch, 1, size, size, device=device)
        target = (torch.rand(batch, device=device) < 0.5).float()
        male = (torch.rand(batch, device=device) < 0.5).long()
        cases = {"residual": lambda: residual(face, target), "paper": lambda: paper(face, male),
                 "paper+classifier": lambda: paper_served(face)}
        for precision in args.precisions:
            for model_name, call in cases.items():
                def step(call=call, precision=precision):
                    with torch.inference_mode(), autocast(precision):
                        call()
                record("inference", model_name, precision, batch, step, warmup=3)
        del face, target, male
    if args.compile:
        for model_name, model, second in (("residual", residual, "target"), ("paper", paper, "male")):
            if over_budget(f"inference compiled {model_name}"):
                break
            try:
                compiled = torch.compile(model)
                batch = batches[-1]
                face = torch.rand(batch, 1, size, size, device=device)
                other = (torch.rand(batch, device=device) < 0.5)
                other = other.float() if second == "target" else other.long()
                for precision in args.precisions:
                    def step(precision=precision):
                        with torch.inference_mode(), autocast(precision):
                            compiled(face, other)
                    compile_start = time.perf_counter()
                    step()
                    timer.sync()
                    log(f"torch.compile {model_name} {precision}: first call {time.perf_counter() - compile_start:.1f} s")
                    record("inference (torch.compile)", model_name, precision, batch, step, warmup=2)
            except Exception as error:  # noqa: BLE001 (optional rows: report and go on)
                log(f"torch.compile {model_name} failed: {type(error).__name__}: {str(error)[:300]}")
                rows.append({"kind": "inference (torch.compile)", "model": model_name,
                             "error": f"{type(error).__name__}: {str(error)[:300]}"})

    # b. training-step compute proxies: the residual sanitizer (the default architecture) and the
    #    paper's SAN (SemiAdversarialNetwork.call: X'_SM, X'_NT, X'_OP from one autoencoder pass)
    for frozen in (classifier, matcher):
        frozen.requires_grad_(False)
    epsilon = 1e-7

    def cross_entropy(p_male, wanted):
        p_male = p_male.float().clamp(epsilon, 1 - epsilon)
        return -(wanted * p_male.log() + (1 - wanted) * (1 - p_male).log()).mean()

    def judged(image):  # random_shift_and_noise before the frozen classifier
        shift = [int(v) for v in torch.randint(-2, 3, (2,))]
        image = torch.roll(image, shifts=shift, dims=(2, 3))
        return image + 0.02 * torch.randn_like(image)

    def residual_loss(face):
        # trainer/losses.py's terms for the residual sanitizer (only the compute matters here)
        target = (torch.rand(face.shape[0], device=device) < 0.5).float()  # drawn per face, as in SanTrainingModel
        sanitized = residual(face, target)
        reconstruction = (face - sanitized.float()).abs().mean()
        gender = cross_entropy(classifier(judged(sanitized))[:, 1], target)
        with torch.no_grad():
            reference = matcher(face).float()
        identity = (matcher(sanitized).float() - reference).square().sum(-1).mean()
        return reconstruction + gender + identity

    paper_training = models["paper_training"]
    order = manifest["models"]["paper_training"]["tf_outputs"]

    def paper_loss(face):
        # trainer/san.py's terms for the paper SAN: reconstruction and matcher on X'_SM, the
        # classifier on X'_SM (its gender) and on X'_OP (the other gender)
        male = (torch.rand(face.shape[0], device=device) < 0.5)
        outputs = dict(zip(order, outputs_of(paper_training(face, male.long()))))
        same, opposite = outputs["same"], outputs["opposite"]
        male = male.float()
        reconstruction = (face - same.float()).abs().mean()
        gender = (cross_entropy(classifier(judged(same))[:, 1], male)
                  + cross_entropy(classifier(judged(opposite))[:, 1], 1 - male))
        with torch.no_grad():
            reference = matcher(face).float()
        identity = (matcher(same).float() - reference).square().sum(-1).mean()
        return reconstruction + gender + identity

    for model_name, trained, loss_of in (("residual", residual, residual_loss), ("paper", paper_training, paper_loss)):
        trained.train()
        parameters = [p for p in trained.parameters()]
        for p in parameters:
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(parameters, lr=1e-4)
        for batch in batches:
            face = torch.rand(batch, 1, size, size, device=device)
            for precision in args.precisions:
                # float16 needs loss scaling, as Keras' mixed_float16 does (LossScaleOptimizer)
                scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

                def step(precision=precision, scaler=scaler):
                    with autocast(precision):
                        loss = loss_of(face)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                record("training step", model_name, precision, batch, step, warmup=3)
                with_grad = sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in parameters)
                # onnx2torch gives each of the paper SAN's three proto-combiner calls its own copy of
                # the 1x1 convolution; no loss term reads X'_NT, so its copy (kernel, bias) gets none.
                unread = 2 if model_name == "paper" else 0
                if with_grad != len(parameters) - unread:
                    log(f"warning: {with_grad} of {len(parameters)} {model_name} weight tensors got a nonzero "
                        f"gradient (expected {len(parameters) - unread})")
            del face
        trained.eval()

    log("")
    log(f"{'kind':<27} {'model':<17} {'precision':<9} {'batch':>5} {'images/s':>12} {'ms/iter':>9}")
    for row in rows:
        if "images_per_s" in row:
            log(f"{row['kind']:<27} {row['model']:<17} {row['precision']:<9} {row['batch']:>5} "
                f"{row['images_per_s']:>12,.1f} {row['ms_per_iteration']:>9.2f}")
        else:
            log(f"{row.get('kind', row.get('benchmark', '')):<27} {row.get('model', ''):<17} "
                f"{row.get('precision', ''):<9} {row.get('batch', ''):>5} "
                f"{row.get('error', row.get('skipped', ''))}")
    log("fp32 = float32 with TF32 allowed (TensorFlow's GPU default); bf16 / fp16 = torch.autocast bfloat16 / "
        "float16 (fp16 training with a GradScaler, as mixed_float16, what the Trainer picks on a GPU, loss-scales). "
        "Proxy: the networks' compute in PyTorch, not the TensorFlow trainer or serving.")
    result = {**info, "agreement": agreement, "rows": rows, "total_s": round(time.perf_counter() - started, 1)}
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as handle:
            json.dump(result, handle, indent=2)
        log(f"wrote {json_path}")
    log(f"measure: done in {result['total_s']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("convert", help="TensorFlow -> ONNX (here, needs tensorflow, tf_keras, tf2onnx)")
    c.add_argument("--out", default="/tmp/gpu_work/onnx")
    c.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    c.add_argument("--opset", type=int, default=17)
    c.add_argument("--seed", type=int, default=SEED)
    m = commands.add_parser("measure", help="ONNX -> PyTorch, agreement check, timings (needs torch, onnx2torch)")
    m.add_argument("--onnx-dir", default=".gpu_onnx")
    m.add_argument("--device", default="cuda")
    m.add_argument("--batch-sizes", type=int, nargs="+", help="default 64 256 on cuda, 4 on cpu")
    m.add_argument("--precisions", nargs="+", choices=("fp32", "bf16", "fp16"), default=["fp32", "bf16", "fp16"])
    m.add_argument("--seconds", type=float, help="timed window per row; default 3 on cuda, 1 on cpu")
    m.add_argument("--tolerance", type=float, default=1e-3, help="max abs diff allowed against TensorFlow (fp32)")
    m.add_argument("--budget-s", type=float, default=300.0, help="skip the remaining rows past this many seconds")
    m.add_argument("--compile", action="store_true", help="also time torch.compile'd lean sanitizers")
    m.add_argument("--json", help="default: $OUT/gpu_proxy.json when OUT is set")
    m.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    convert(args) if args.command == "convert" else measure(args)


if __name__ == "__main__":
    main()
