"""Face preparation and composition: decode an input, find and align its faces for the model,
then warp the sanitized faces back into the photo, re-encode it and deliver it.

Decoding and alignment are the project's one implementation (components/faces/imaging.py), the
same the training data went through; eye centres are fixed fractions of the image for aligned
crops (--faces aligned) or found by a detector (--faces wild: CenterFace, components/faces/centerface.py,
or dlib, detection.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from threadpoolctl import threadpool_info, threadpool_limits

from components.faces.centerface import CenterFaceFinder
from components.faces.detection import FaceFinder
from components.faces.imaging import (
    WRITABLE_FORMATS, DecodedImage, ImageRejected, align_face, decode_image, encode_like, paste_face, to_gray_float,
)
from pipelines.sanitize.containers import stage, staged_path, staged_ref
from pipelines.sanitize.layout import (
    COPIED_NO_FACE, IMAGES_DIR, NAMESPACE, SANITIZED, TMP_DIR, InferenceFailed, JobPlan, write_atomically,
)
from pipelines.sanitize.manifest import manifest_row, reject

SUPPORTED_FORMATS = WRITABLE_FORMATS  # decoded, and written back in the same format
FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif",
                     "HEIF": ".heic", "AVIF": ".avif"}


def output_key(source: dict, source_format: str) -> str:
    rel = source["out_rel"]
    return rel + FORMAT_EXTENSIONS[source_format] if source["append_ext"] else rel


def frames_note(frames: int) -> str:
    """The manifest's word on a multi-frame input (animated GIF/WebP, multi-page TIFF)."""
    return f"first of {frames} frames sanitized; the other frames are not in the output" if frames > 1 else ""


def deliver(plan: JobPlan, key: str, source: dict, encoded: bytes, source_format: str, status: str, faces: int,
            size, detail: str = "") -> tuple[str, Any]:
    """A finished input: ("row", manifest row) once its image file is written (images output), or
    ("record", (shard, reference)) once it is staged for its container shard (container output)."""
    if plan.output_kind == "images":
        out = output_key(source, source_format)
        written = write_atomically(plan.out(IMAGES_DIR, out), encoded, plan.out(TMP_DIR))
        Metrics.counter(NAMESPACE, "images_written" if written else "images_already_present").inc()
        return "row", manifest_row(plan, key, source, status, output_key=out, faces=faces, size=size,
                                   input_format=source_format, detail=detail)
    return "record", stage(plan, key, source, encoded, source_format, status, faces, size, detail)


def _glibc_malloc_trim():
    """glibc's malloc_trim, or None on a C library without it (musl, macOS)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def one_blas_thread() -> None:
    """Limits numpy's BLAS (OpenBLAS in the numpy and scipy wheels) to one thread in this process.

    The job's parallelism is Beam's worker threads (one per core) and TensorFlow's own thread pool;
    the paste-back's small matrix products (colour conversion, the skin tone's filters) would each
    start BLAS threads on the same cores, and OpenBLAS's threads spin while they wait. Measured on
    the 2-core build machine (README, "Bulk sanitization"): the job ran at 65 images/s with BLAS at
    its default of one thread per core, 93 with one thread.

    Process-wide. A local run's driver has already set it (run_job, in the thread threadpoolctl
    lets control OpenBLAS, which gets its own setting back afterwards), so a worker thread only
    sets it where nobody has: in a remote worker process."""
    if any(pool["num_threads"] > 1 for pool in threadpool_info() if pool["user_api"] == "blas"):
        threadpool_limits(limits=1, user_api="blas")


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def fix_mmap_threshold(size: int) -> bool:
    """Process-wide: glibc serves every allocation of `size` bytes or more by its own mmap and
    unmaps it when freed, instead of raising that threshold (up to 32 MiB) as blocks are freed.

    With glibc's adaptive threshold the model's batches and TensorFlow's tensors of one to a few
    MiB are carved from the arenas among small long-lived objects; freed, they stay resident as
    holes, and a long job's memory grows with the inputs it has seen (the 20,000-image job peaked
    at 1.18-1.20x the 1,000-image one; with 1 MiB fixed, 1.08-1.12x: README, "Memory"). False where
    the C library has no mallopt (musl, macOS)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(size)))


class HeapReleaser:
    """Hands the C heap's free pages back to the system every `every_s` seconds of work.

    Each photo allocates and frees buffers of a few hundred kilobytes (decoded pixels, the model's
    batches, encoded bytes) from several threads; glibc keeps the freed space of its arenas mapped,
    fragmented, and a long job's resident memory grows with the inputs it has seen. malloc_trim(0)
    returns every whole free page (madvise), which keeps memory flat at the cost of a few
    milliseconds per call. A no-op where the C library has no malloc_trim.

    fix_mmap_threshold_once also fixes glibc's mmap threshold (fix_mmap_threshold): the blocks
    that free pages cannot return, a few MiB among live objects, are then not in the arenas."""

    _lock = threading.Lock()
    _last = 0.0
    _trim = _glibc_malloc_trim()
    _threshold_fixed = False

    def __init__(self, every_s: float = 2.0):
        self._every_s = every_s

    @classmethod
    def fix_mmap_threshold_once(cls, mib: float) -> None:
        """fix_mmap_threshold(`mib` MiB) the first time this process asks with `mib` > 0 (the
        threshold is process-wide; later values are ignored); 0 leaves glibc's adaptive one."""
        with cls._lock:
            if mib > 0 and not cls._threshold_fixed:
                cls._threshold_fixed = fix_mmap_threshold(int(mib * 2**20))

    def maybe_release(self) -> None:
        if self._trim is None or os.environ.get("FACESAN_NO_HEAP_RELEASE"):
            return
        now = time.monotonic()
        if now - HeapReleaser._last < self._every_s or not HeapReleaser._lock.acquire(blocking=False):
            return
        try:
            HeapReleaser._last = now
            self._trim(0)
        finally:
            HeapReleaser._lock.release()


@dataclass(frozen=True)
class FaceContext:
    """What RunInference carries beside a photo's faces (the key of the keyed model handler)."""

    key: str
    source: dict
    data: bytes | None  # the input's bytes, decoded again for the paste-back (None when `decoded` is carried)
    eyes: tuple  # ((left_eye, right_eye), ...) in image coordinates, one per face
    mouths: tuple  # the mouth centre of each face (image coordinates), or None where not found
    note: str = ""  # how the faces were found, when it is worth a word in the manifest
    # The decoded photo, kept for the paste-back when it is small (an aligned crop): decoding it
    # again would cost more than holding it while its batch is in the model. Large photos are
    # decoded again instead, so a batch of group photos does not hold their pixels.
    decoded: DecodedImage | None = None


# The CenterFace detectors of --detector and the precision each runs CenterFace in (dlib is the other).
DETECTOR_PRECISION = {"centerface": "float32", "centerface-int8": "int8"}
DETECTORS = (*DETECTOR_PRECISION, "dlib")
CARRY_DECODED_PIXELS = 512 * 512  # photos up to this many pixels travel decoded to the paste-back


class StageFailed(Exception):
    """An unexpected error of one input at one stage; the input is rejected as `<stage>_failed`."""

    def __init__(self, stage: str, error: Exception | str):
        detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        super().__init__(f"{stage}: {detail}")
        self.reason = f"{stage}_failed"
        self.detail = detail


@contextmanager
def at_stage(name: str):
    """Turns any exception but ImageRejected (which has its own reason) into StageFailed(name)."""
    try:
        yield
    except (ImageRejected, StageFailed):
        raise
    except Exception as error:  # one odd input must not stop the job: it goes to the dead letter
        raise StageFailed(name, error) from error


class PrepareFaces(beam.DoFn):
    """Reads and decodes one input, finds and aligns its faces -> (FaceContext, faces [k,S,S,1]).

    Inputs that cannot be used (with the stage that failed: decode, detect, align; or the decoder's
    own reason), and (with --no-face reject, the default) photos without a face, leave as rejected
    rows on the "rows" output; with --no-face copy-unsanitized a photo without a face is re-encoded
    and written as it is.
    """

    ROWS = "rows"
    RECORDS = "records"

    def __init__(self, plan: JobPlan):
        self._plan = plan
        self._finder = None

    def setup(self):
        one_blas_thread()
        settings = self._plan.settings
        if settings.faces == "aligned" and not settings.verify_aligned:
            return
        if settings.detector == "dlib":
            self._finder = FaceFinder(settings.detect_upsample, settings.detect_max_side)
        else:
            # One ONNX Runtime thread per search: Beam's worker threads (one per core here) search
            # photos side by side; a thread per core in each search made the group-photo job 17% slower
            # on the 2-core build machine (README, "Bulk sanitization").
            self._finder = CenterFaceFinder(detect_max_side=settings.detect_max_side, min_face=settings.min_face,
                                            threads=1, precision=DETECTOR_PRECISION[settings.detector])

    def process(self, element):
        key, source = element
        plan = self._plan
        if source["problem"]:
            yield beam.pvalue.TaggedOutput(self.ROWS, reject(plan, key, source, *source["problem"]))
            return
        if plan.output_kind != "images" and FileSystems.exists(staged_path(plan, key)):
            # Sanitized by an earlier run that stopped before writing its shard: kept, not redone.
            Metrics.counter(NAMESPACE, "inputs_already_staged").inc()
            yield beam.pvalue.TaggedOutput(self.RECORDS, staged_ref(plan, key, source))
            return
        data = source["data"]
        if data is None:
            try:
                with FileSystems.open(source["uri"]) as handle:
                    data = handle.read()
            except Exception as error:  # vanished since listing, permissions, ...
                yield beam.pvalue.TaggedOutput(self.ROWS, reject(
                    plan, key, source, "unreadable", f"{type(error).__name__}: {error}"))
                return
        Metrics.counter(NAMESPACE, "images_read").inc()
        found = {}
        try:
            yield from self._prepare(key, source, data, found)
        except (ImageRejected, StageFailed) as error:
            yield beam.pvalue.TaggedOutput(self.ROWS, reject(
                plan, key, source, error.reason, error.detail, found.get("size", (0, 0)), found.get("format", "")))

    def _prepare(self, key, source, data, found):
        plan, settings = self._plan, self._plan.settings
        with at_stage("decode"):
            decoded = decode_image(data, settings.max_pixels, settings.min_side, SUPPORTED_FORMATS)
        pixels = decoded.pixels
        height, width = pixels.shape[:2]
        found.update(size=(width, height), format=decoded.source_format)
        notes = []
        with at_stage("detect"):
            if settings.faces == "aligned":
                lx, ly, rx, ry = settings.aligned_eyes
                eyes = [((lx * width, ly * height), (rx * width, ry * height))]
                mouths = [None]
                self._check_aligned(pixels, eyes[0])
            else:
                detected, turns = self._finder.find_any_orientation(pixels)
                eyes = [(face.left_eye, face.right_eye) for face in detected]
                mouths = [face.mouth for face in detected]
                if turns:
                    Metrics.counter(NAMESPACE, "photos_found_turned").inc()
                    notes.append(f"faces found with the photo turned by {90 * turns} degrees")
                reach = self._finder.smallest_face(height, width)
                if reach > settings.min_face + 1e-6:
                    # Not silent: the row says that faces smaller than the detector's reach may be missed.
                    Metrics.counter(NAMESPACE, "photos_flagged_small_faces").inc()
                    notes.append(f"FLAGGED: faces under {reach:.0f} px between the eyes may be missed in this photo "
                                 f"(--min-face {settings.min_face:g}; use --detector centerface, which searches "
                                 f"down to it)")
        found_note = "; ".join(notes)
        Metrics.counter(NAMESPACE, "faces").inc(len(eyes))
        if not eyes:
            if settings.no_face == "reject":
                raise ImageRejected("no_face", "no face found, upright or turned (--no-face reject); check the photo, "
                                               "or pass --no-face copy-unsanitized to let such photos out unsanitized")
            with at_stage("encode"):
                encoded = encode_like(pixels, decoded.source_format, settings.jpeg_quality)
            with at_stage("write"):
                kind, value = deliver(plan, key, source, encoded, decoded.source_format, COPIED_NO_FACE, 0,
                                      (width, height), frames_note(decoded.frames))
            Metrics.counter(NAMESPACE, COPIED_NO_FACE).inc()
            yield beam.pvalue.TaggedOutput(self.ROWS if kind == "row" else self.RECORDS, value)
            return
        size = plan.model.image_size
        with at_stage("align"):
            faces = np.stack([to_gray_float(align_face(pixels, left, right, size)) for left, right in eyes])
        carried = height * width <= CARRY_DECODED_PIXELS
        yield FaceContext(key, dict(source, data=None), None if carried else data, tuple(eyes), tuple(mouths),
                          found_note, decoded if carried else None), faces

    def _check_aligned(self, pixels: np.ndarray, eyes) -> None:
        """Aligned mode: refuse what is not an aligned face crop (a photo, a scan, a banner)."""
        height, width = pixels.shape[:2]
        low, high = self._plan.settings.aligned_aspect
        hint = "is it a photo rather than an eye-aligned face crop? Use --faces wild for photos"
        if not low <= width / height <= high:
            raise ImageRejected("not_aligned", f"{width}x{height} pixels: width/height {width / height:.2f} is outside "
                                               f"--aligned-aspect {low} {high}; {hint}")
        if self._finder is None:
            return
        expected = np.mean(eyes, axis=0)
        distance = float(np.linalg.norm(np.subtract(eyes[1], eyes[0])))
        for face in self._finder.find(pixels):
            middle = np.add(face.left_eye, face.right_eye) / 2
            if np.linalg.norm(middle - expected) < 0.35 * distance:
                return
        raise ImageRejected("not_aligned", f"no face found with its eyes at the --aligned-eyes positions "
                                           f"(--verify-aligned); {hint}")


class ComposeAndWrite(beam.DoFn):
    """Warps the sanitized faces back into the photo, re-encodes it and writes it -> manifest row
    (images output), or -> (shard, record) on the RECORDS output (container output). A photo whose
    inference, composition, encoding or writing failed becomes a rejected row instead."""

    RECORDS = "records"

    def __init__(self, plan: JobPlan):
        self._plan = plan

    def setup(self):
        one_blas_thread()
        HeapReleaser.fix_mmap_threshold_once(self._plan.settings.heap_mmap_threshold_mib)
        self._heap = HeapReleaser()

    def process(self, element):
        self._heap.maybe_release()
        context, result = element
        plan, settings = self._plan, self._plan.settings
        found = {}
        try:
            if isinstance(result.inference, InferenceFailed):
                raise StageFailed("inference", result.inference.detail)
            decoded = context.decoded
            if decoded is None:
                with at_stage("decode"):
                    decoded = decode_image(context.data, settings.max_pixels, settings.min_side, SUPPORTED_FORMATS)
            pixels = decoded.pixels
            found.update(size=(pixels.shape[1], pixels.shape[0]), format=decoded.source_format)
            with at_stage("compose"):
                # strict: a face without its sanitized output must fail the photo (to the dead letter),
                # never leave it out of the paste-back unsanitized.
                for sanitized, given, (left, right), mouth in zip(result.inference, result.example, context.eyes,
                                                                  context.mouths, strict=True):
                    pixels = paste_face(pixels, sanitized, given, left, right, mouth, paste=settings.paste,
                                        mask=settings.mask, color=settings.color, feather=settings.feather)
            with at_stage("encode"):
                encoded = encode_like(pixels, decoded.source_format, settings.jpeg_quality)
            with at_stage("write"):
                kind, value = deliver(plan, context.key, context.source, encoded, decoded.source_format, SANITIZED,
                                      len(context.eyes), found["size"],
                                      "; ".join(n for n in (context.note, frames_note(decoded.frames)) if n))
        except (ImageRejected, StageFailed) as error:
            yield reject(plan, context.key, context.source, error.reason, error.detail, found.get("size", (0, 0)),
                         found.get("format", ""))
            return
        Metrics.counter(NAMESPACE, SANITIZED).inc()
        Metrics.counter(NAMESPACE, "faces_sanitized").inc(len(context.eyes))
        yield value if kind == "row" else beam.pvalue.TaggedOutput(self.RECORDS, value)
