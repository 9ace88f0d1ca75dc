"""The one image-decoding path and the one face-alignment function of the project.

Training ingestion (CelebA example gen) and the bulk sanitization job both call these, so a face
is decoded and aligned the same way wherever it enters the system.

Coordinates are continuous pixel coordinates with the origin at the top-left corner of the
top-left pixel (pixel (i, j) covers [i, i+1) x [j, j+1)); CelebA's integer landmarks are read as
pixel centres, i.e. x + 0.5.
"""

from __future__ import annotations

import io
import re
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
    frames: int = 1  # animated GIF/WebP/TIFF pages: only the first is decoded


# The formats encode_like writes back (Pillow's names; HEIF needs the 'formats' extra, pillow-heif).
WRITABLE_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "HEIF", "AVIF")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def _register_heif() -> bool:
    try:
        import pillow_heif  # the 'formats' extra
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


HEIF_SUPPORTED = _register_heif()


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 1,
                 formats: tuple[str, ...] | None = None) -> DecodedImage:
    """Decodes JPEG/PNG/... bytes to 8-bit RGB, applying the EXIF orientation.

    Grayscale, palette, CMYK, 16-bit and alpha images are converted to RGB (alpha is composited
    on white). Raises ImageRejected with reason "empty", "undecodable", "too_large",
    "too_small" (a side below `min_side`) or "unsupported_format" (a PIL format not in `formats`,
    when given); the size checks use the declared size, before any pixel is decoded.
    """
    if not data:
        raise ImageRejected("empty", "the file has zero bytes")
    if not HEIF_SUPPORTED and data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        raise ImageRejected("unsupported_format", "HEIC/HEIF photo: install pillow-heif (the project's 'formats' "
                                                  "extra, `uv sync --extra formats`; infra/with-env.sh does this)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if formats is not None and image.format not in formats:
                raise ImageRejected(
                    "unsupported_format", f"{image.format or 'unknown'} image; supported: {', '.join(formats)}")
            if width * height > max_pixels:
                raise ImageRejected(
                    "too_large",
                    f"{width}x{height} pixels exceeds the limit of {max_pixels} pixels",
                )
            if min(width, height) < min_side:
                raise ImageRejected("too_small", f"{width}x{height} pixels; each side must be at least {min_side}")
            source_format = image.format or "UNKNOWN"  # exif_transpose returns a copy without it
            frames = int(getattr(image, "n_frames", 1) or 1)
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            return DecodedImage(_to_rgb8(image), source_format, frames)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as error:  # PIL's own guard, at twice its pixel limit
        raise ImageRejected("too_large", str(error)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        # Without the reader's object address (PIL names it), so a detail is the same on every run.
        message = re.sub(r" <[^<>]* at 0x[0-9a-fA-F]+>", "", str(error))
        raise ImageRejected("undecodable", f"{type(error).__name__}: {message}") from None


def _to_rgb8(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L"):
        # 16-bit grayscale: the high byte, as Pillow reduces 16-bit RGB and TensorFlow's PNG decoder
        # reduces any 16-bit PNG (trainer/preprocessing.py decodes the same bytes to the same face).
        gray = (np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "I":
        # 32-bit integer grayscale (e.g. some TIFFs): scale a 16-bit range down instead of clipping.
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


def encode_like(pixels: np.ndarray, source_format: str, jpeg_quality: int = 95) -> bytes:
    """HxWx3 uint8 as `source_format` bytes (WRITABLE_FORMATS), written fresh: no EXIF (so no GPS),
    no ICC profile, no XMP, no comments or text chunks of any original survive. Lossy formats use
    `jpeg_quality`; GIF is quantised to its 256-colour palette; one frame only."""
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if source_format == "JPEG":
        image.save(buffer, format="JPEG", quality=jpeg_quality, optimize=False)
    elif source_format == "PNG":
        image.save(buffer, format="PNG", optimize=False)
    elif source_format in ("WEBP", "AVIF", "HEIF"):
        if source_format == "HEIF" and not HEIF_SUPPORTED:
            raise ValueError("cannot write HEIF without pillow-heif (the project's 'formats' extra)")
        image.save(buffer, format=source_format, quality=jpeg_quality)
    elif source_format == "TIFF":
        image.save(buffer, format="TIFF", compression="tiff_lzw")
    elif source_format == "BMP":
        image.save(buffer, format="BMP")
    elif source_format == "GIF":
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buffer, format="GIF")
    else:
        raise ValueError(f"cannot re-encode as {source_format!r}; only {', '.join(WRITABLE_FORMATS)}")
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


def unalign_face(pixels: np.ndarray, face: np.ndarray, left_eye, right_eye, feather: float = 0.08,
                 keep_chroma: bool = False) -> np.ndarray:
    """The inverse of `align_face`: warps an aligned S x S face back onto the photo and blends it.

    `face` is S x S (or S x S x 1) float in [0, 1], e.g. the SAN's grayscale output for the crop that
    `align_face(pixels, left_eye, right_eye, S)` produced. Inside the crop's footprint the photo is
    replaced; the last `feather` * S pixels towards the crop's border fade linearly into the
    original, so there is no hard seam. The SAN outputs luminance only: by default the face region
    becomes gray (the original colour, which can carry gender cues such as make-up, is dropped);
    `keep_chroma=True` keeps the original's chroma (YCbCr) and replaces only its luminance.
    Only the footprint's bounding box is resampled, so cost follows the face, not the photo.
    """
    size = face.shape[0]
    face = np.clip(np.asarray(face, dtype=np.float32).reshape(size, size), 0.0, 1.0)
    forward = eye_alignment_matrix(left_eye, right_eye, size)
    inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))
    corners = inverse @ np.array([[0, size, 0, size], [0, 0, size, size], [1, 1, 1, 1]], dtype=np.float64)
    height, width = pixels.shape[:2]
    x0, y0 = max(int(np.floor(corners[0].min())), 0), max(int(np.floor(corners[1].min())), 0)
    x1, y1 = min(int(np.ceil(corners[0].max())), width), min(int(np.ceil(corners[1].max())), height)
    if x1 <= x0 or y1 <= y0:
        return pixels.copy()
    # Output pixel (x, y) of the box samples the aligned face at forward(x + x0, y + y0).
    shifted = forward @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    ramp = np.minimum(np.arange(size) + 0.5, size - np.arange(size) - 0.5) / max(feather * size, 1e-6)
    ramp = np.clip(ramp, 0.0, 1.0).astype(np.float32)
    mask = np.minimum(ramp[:, None], ramp[None, :])

    def warp(plane: np.ndarray) -> np.ndarray:
        image = Image.fromarray(plane).transform(  # float32 -> mode "F"
            (x1 - x0, y1 - y0), Image.Transform.AFFINE, data=tuple(shifted.ravel()),
            resample=Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32)

    alpha = np.clip(warp(mask), 0.0, 1.0)[:, :, None]
    luminance = warp(face * 255.0)[:, :, None]
    box = pixels[y0:y1, x0:x1].astype(np.float32)
    if keep_chroma:
        ycbcr = np.asarray(Image.fromarray(pixels[y0:y1, x0:x1]).convert("YCbCr"), dtype=np.float32)
        ycbcr[:, :, :1] = alpha * luminance + (1.0 - alpha) * ycbcr[:, :, :1]
        blended_u8 = np.asarray(Image.fromarray(np.clip(ycbcr + 0.5, 0, 255).astype(np.uint8), mode="YCbCr")
                                .convert("RGB"))
        # Outside the footprint keep the original bytes exactly (YCbCr round trips are lossy).
        blended = np.where(alpha > 0, blended_u8.astype(np.float32), box)
    else:
        blended = alpha * luminance + (1.0 - alpha) * box
    out = pixels.copy()
    out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out


# tf.image.rgb_to_grayscale's weights (ITU-R BT.601 luma), so a face prepared with numpy here is
# the face trainer.preprocessing.to_model_input gives the SAN in training.
_LUMA = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)


def to_gray_float(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxWx1 float32 gray in [0, 1], as trainer.preprocessing.to_model_input."""
    return (rgb.astype(np.float32) / 255.0 @ _LUMA)[:, :, None]
