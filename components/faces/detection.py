"""Faces and eye centres in in-the-wild photos, with dlib's HOG detector and 5-point landmark model
(CenterFace, which finds more faces, is in centerface.py; both search turned photos alike).

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
    mouth: tuple[float, float] | None = None  # mouth centre (CenterFace's mouth corners); None: not given


def eye_distance(face: FoundFace) -> float:
    return float(np.hypot(face.right_eye[0] - face.left_eye[0], face.right_eye[1] - face.left_eye[1]))


class OrientationSearch:
    """find_any_orientation for a detector with `find(pixels) -> [FoundFace]` and
    `smallest_face(height, width)`: the smallest eye distance (photo pixels) its search of a photo
    that size reaches, so that the job can flag photos in which smaller faces would be missed."""

    def find(self, pixels: np.ndarray) -> list[FoundFace]:
        raise NotImplementedError  # each detector (FaceFinder, CenterFaceFinder) implements it

    def smallest_face(self, height: int, width: int) -> float:
        raise NotImplementedError  # each detector knows its own reach at its search scales

    def find_any_orientation(self, pixels: np.ndarray) -> tuple[list[FoundFace], int]:
        """(faces, quarter turns): the faces of the photo as it is, or, when none is found, of the photo
        turned by 90, 180 or 270 degrees (a wrong or lost orientation tag; detectors find upright
        faces best), with their eye centres mapped back into the photo as it is. Alignment then
        turns each face upright itself (align_face follows the eyes)."""
        faces = self.find(pixels)
        if faces:
            return faces, 0
        height, width = pixels.shape[:2]
        for turns in (1, 2, 3):
            found = self.find(np.ascontiguousarray(np.rot90(pixels, turns)))
            if found:
                return [_turned_back(face, turns, width, height) for face in found], turns
        return [], 0


class FaceFinder(OrientationSearch):
    """Detects frontal faces with dlib's HOG detector and returns their eye centres, in a
    deterministic order (top, left).

    `upsample` is dlib's pyramid upsampling (1 finds faces down to about 40 px); photos larger than
    `detect_max_side` are searched at that size and the boxes scaled back, so a 12-megapixel photo
    costs what a 1.6-megapixel one does; landmarks are always fitted at full resolution.
    """

    # dlib's HOG window is 80 px; each pyramid upsampling halves the smallest face it finds, whose
    # eyes are about 0.4 of its box apart.
    REACH_AT_NO_UPSAMPLE = 32.0

    def __init__(self, upsample: int = 1, detect_max_side: int = 1600):
        dlib = require_dlib()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5")))
        self._upsample = upsample
        self._max_side = detect_max_side

    def smallest_face(self, height: int, width: int) -> float:
        return self.REACH_AT_NO_UPSAMPLE / 2 ** self._upsample / min(1.0, self._max_side / max(height, width))

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


def _turned_back(face: FoundFace, turns: int, width: int, height: int) -> FoundFace:
    """A face found in np.rot90(photo, turns) (counter-clockwise quarter turns) in the photo's own
    continuous coordinates (photo W x H)."""
    def back(x, y):
        if turns == 1:
            return width - y, x
        if turns == 2:
            return width - x, height - y
        return y, height - x

    left, right = back(*face.left_eye), back(*face.right_eye)
    mouth = None if face.mouth is None else back(*face.mouth)
    corners = [back(x, y) for x in (face.box[0], face.box[2]) for y in (face.box[1], face.box[3])]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    # Left/right as in the upright face: the eye that was left in the turned photo stays "left".
    return FoundFace(tuple(left), tuple(right), (int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))),
                     None if mouth is None else tuple(mouth))
