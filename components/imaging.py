"""The one image-decoding path and the one face-alignment function of the project.

Training ingestion (CelebA example gen) and the bulk sanitization job both call these, so a face
is decoded and aligned the same way wherever it enters the system.

Coordinates are continuous pixel coordinates with the origin at the top-left corner of the
top-left pixel (pixel (i, j) covers [i, i+1) x [j, j+1)); CelebA's integer landmarks are read as
pixel centres, i.e. x + 0.5.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Eye centres in the aligned face, as fractions of its side: the eyes sit a little above the
# middle and 0.3 of the width apart, so forehead to chin fits in the square crop.
ALIGNED_LEFT_EYE = (0.35, 0.40)
ALIGNED_RIGHT_EYE = (0.65, 0.40)

# Refuse decompression bombs before decoding: 50 megapixels is far above any face photo.
DEFAULT_MAX_PIXELS = 50_000_000


class ImageRejected(ValueError):
    """An input image that cannot be used; `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # HxWx3 uint8 RGB
    source_format: str  # PIL format name, e.g. "JPEG", "PNG"


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decodes JPEG/PNG/... bytes to 8-bit RGB, applying the EXIF orientation.

    Grayscale, palette, CMYK, 16-bit and alpha images are converted to RGB (alpha is composited
    on white). Raises ImageRejected with reason "empty", "undecodable" or "too_large".
    """
    if not data:
        raise ImageRejected("empty", "the file has zero bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    "too_large",
                    f"{width}x{height} pixels exceeds the limit of {max_pixels} pixels",
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            return DecodedImage(_to_rgb8(image), image.format or "UNKNOWN")
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageRejected("undecodable", f"{type(error).__name__}: {error}") from None


def _to_rgb8(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale the full range down to 8 bits instead of clipping.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max(initial=0) > 255 else 255.0
        gray = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG bytes of an HxWx3 (or HxW) uint8 array, with no metadata chunks."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def eye_alignment_matrix(left_eye, right_eye, size: int) -> np.ndarray:
    """2x3 similarity transform mapping source coordinates to aligned-face coordinates.

    left_eye/right_eye are (x, y) eye centres in the source image (left = smaller x in an
    upright face); the result puts them at ALIGNED_LEFT_EYE/ALIGNED_RIGHT_EYE * size.
    """
    src = np.asarray([left_eye, right_eye], dtype=np.float64)
    dst = np.asarray([ALIGNED_LEFT_EYE, ALIGNED_RIGHT_EYE], dtype=np.float64) * size
    src_vec, dst_vec = src[1] - src[0], dst[1] - dst[0]
    src_len = np.hypot(*src_vec)
    if src_len < 1e-6:
        raise ImageRejected("bad_landmarks", f"left and right eye coincide at {tuple(src[0])}")
    # Similarity as a complex multiplication: z_dst = a * z_src + t.
    a = complex(*dst_vec) / complex(*src_vec)
    t = complex(*dst[0]) - a * complex(*src[0])
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]])


def align_face(pixels: np.ndarray, left_eye, right_eye, size: int) -> np.ndarray:
    """Warps an HxWx3 uint8 image so the eyes land on the canonical positions; size x size x 3.

    Areas outside the source are filled by replicating nothing (black), as CelebA's own crops do.
    """
    forward = eye_alignment_matrix(left_eye, right_eye, size)
    inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))[:2]
    # PIL's affine transform works in the same continuous coordinates (it samples the source at
    # inverse(x + 0.5, y + 0.5) for output pixel (x, y)), so the inverse is used as it is.
    matrix = inverse
    image = Image.fromarray(pixels)
    aligned = image.transform(
        (size, size), Image.Transform.AFFINE, data=tuple(matrix.ravel()), resample=Image.Resampling.BILINEAR
    )
    return np.asarray(aligned)


def celeba_landmark_to_point(x: int, y: int) -> tuple[float, float]:
    """CelebA landmarks are integer pixel indices; their centre in continuous coordinates."""
    return (x + 0.5, y + 0.5)
