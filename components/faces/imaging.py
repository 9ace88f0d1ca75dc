"""The one image-decoding path and the one face-alignment function of the project.

Training ingestion (CelebA example gen) and the bulk sanitization job both call these, so a face
is decoded and aligned the same way wherever it enters the system.

Coordinates are continuous pixel coordinates with the origin at the top-left corner of the
top-left pixel (pixel (i, j) covers [i, i+1) x [j, j+1)); CelebA's integer landmarks are read as
pixel centres, i.e. x + 0.5.
"""

from __future__ import annotations

import dataclasses
import functools
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
            ImageOps.exif_transpose(image, in_place=True)  # (a copy only where a turn is needed)
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
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


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


def _is_identity(matrix: np.ndarray) -> bool:
    """A 2x3 affine map within 1e-9 of the identity (it moves no pixel centre of an image under
    1,000 pixels by a millionth of a pixel)."""
    return bool(np.allclose(matrix, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], rtol=0.0, atol=1e-9))


def align_face(pixels: np.ndarray, left_eye, right_eye, size: int) -> np.ndarray:
    """Warps an HxWx3 uint8 image so the eyes land on the canonical positions; size x size x 3
    (`pixels` itself when they are there already: treat the result as read-only).

    Areas outside the source are filled by replicating nothing (black), as CelebA's own crops do.
    """
    forward = eye_alignment_matrix(left_eye, right_eye, size)
    if pixels.shape[:2] == (size, size) and _is_identity(forward):
        # The photo is already in the aligned frame (an aligned database in the model's geometry):
        # the warp would sample every pixel at its own centre, so it is skipped.
        return pixels
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


PASTE_MODES = ("edit", "face")
MASK_SHAPES = ("face", "crop")
COLOR_MODES = ("skin", "gray", "keep-chroma")
# The mouth's height in an aligned face (fraction of the side) when the detector gives no mouth
# landmarks (dlib's 5 points, aligned crops): CelebA's mean eye-to-mouth distance is 1.13 eye
# distances, and the aligned eye distance is 0.3 of the side.
DEFAULT_ALIGNED_MOUTH = (0.5, ALIGNED_LEFT_EYE[1] + 1.13 * (ALIGNED_RIGHT_EYE[0] - ALIGNED_LEFT_EYE[0]))


def face_mask(size: int, mouth=DEFAULT_ALIGNED_MOUTH, feather: float = 0.08, shape: str = "face") -> np.ndarray:
    """size x size float32 blend weights in [0, 1] over an aligned face.

    shape "face": an oval from forehead to chin and cheek to cheek, placed by the landmarks: the
    eyes are where alignment put them, `mouth` is the mouth centre in aligned fractions (from the
    detector's mouth corners). Face proportions: the eyes sit 1.25 eye-to-mouth distances below
    the hairline and 1.75 above the chin; the face is 2.3 eye distances wide. The weights fall
    smoothly to 0 over the last `feather` (fraction of the side) inside the oval and the square.
    shape "crop": the whole aligned square, with the same soft border.
    """
    eye_y = ALIGNED_LEFT_EYE[1]
    eye_distance = ALIGNED_RIGHT_EYE[0] - ALIGNED_LEFT_EYE[0]
    mouth_x, mouth_y = mouth
    if not (eye_y + 0.6 * eye_distance <= mouth_y <= eye_y + 1.8 * eye_distance and abs(mouth_x - 0.5) < eye_distance):
        mouth_x, mouth_y = DEFAULT_ALIGNED_MOUTH  # an implausible landmark: the average face's
    width = max(feather, 1e-6)
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    border = np.clip(np.minimum(centres, 1.0 - centres) / width, 0.0, 1.0)
    weights = np.minimum(border[:, None], border[None, :])
    if shape == "face":
        drop = mouth_y - eye_y
        cx, cy = (0.5 + mouth_x) / 2, eye_y + 0.25 * drop
        ax, ay = 1.15 * eye_distance, 1.5 * drop
        y, x = centres[:, None], centres[None, :]
        radius = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
        weights = np.minimum(weights, np.clip((1.0 - radius) * min(ax, ay) / width, 0.0, 1.0))
    elif shape != "crop":
        raise ValueError(f"mask shape {shape!r}: use one of {', '.join(MASK_SHAPES)}")
    weights = weights * weights * (3.0 - 2.0 * weights)  # smoothstep: no visible edge at either end
    return weights.astype(np.float32)


# tf.image.rgb_to_grayscale's weights (ITU-R BT.601 luma), so a face prepared with numpy here is
# the face trainer.preprocessing.to_model_input gives the SAN in training.
_LUMA = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)
# JPEG's (full-range BT.601) YCbCr, with Y by the model's luma weights (to_gray_float): rows Y, Cb,
# Cr of the map from RGB (plus 128 on Cb and Cr), and the map from (Cb, Cr) - 128 back to RGB.
_TO_YCC = np.array([_LUMA, [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                   dtype=np.float32)
_CHROMA_TO_RGB = np.array([[0.0, 1.402], [-0.344136, -0.714136], [1.772, 0.0]], dtype=np.float32)


def _rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """YCbCr of float RGB (..., 3)."""
    ycc = rgb @ _TO_YCC.T.astype(rgb.dtype)
    ycc[..., 1:] += 128.0
    return ycc


SKIN_FIELD = 32  # the skin tone is computed with the face this many pixels wide (it is smooth)


@dataclass(frozen=True)
class _SkinField:
    """The skin tone's smoothing as matrices, fixed per placement (so per geometry: made once for a
    database of aligned crops): the box filter that shrinks the face's box to SKIN_FIELD pixels,
    the blend mask at that size, the Gaussian and its mask-weighted sum, and the bilinear
    upsampling back. Each is the separable filter Pillow or SciPy applies, taken as a matrix by
    filtering the identity (the filters are linear), so applying it is a few small matrix
    products for both chroma planes at once."""

    shrink: tuple  # (rows, columns): shrunk = rows @ plane @ columns
    weight: np.ndarray
    smooth: tuple  # (rows, columns) of the Gaussian
    total: np.ndarray  # the smoothed weight
    grow: tuple  # (rows, columns) of the bilinear upsampling

    @staticmethod
    def of(alpha: np.ndarray, face_side: float) -> "_SkinField":
        from scipy.ndimage import gaussian_filter1d

        height, width = alpha.shape
        factor = max(1.0, face_side / SKIN_FIELD)
        small_w, small_h = max(1, round(width / factor)), max(1, round(height / factor))
        sigma = 0.2 * face_side / factor

        def resized(n, m, method):  # m x n: Pillow's resampling of a column of n samples to m
            return _resized(np.eye(n, dtype=np.float32), (n, m), method)

        def gaussian(n):
            return gaussian_filter1d(np.eye(n), sigma, axis=0, mode="nearest")

        def after(matrix):  # the right-hand factor, C-ordered (numpy's stacked matmul is slow on a transpose)
            return np.ascontiguousarray(matrix.T)

        shrink = (resized(height, small_h, Image.Resampling.BOX), after(resized(width, small_w, Image.Resampling.BOX)))
        smooth = (gaussian(small_h), after(gaussian(small_w)))
        grow = (resized(small_h, height, Image.Resampling.BILINEAR),
                after(resized(small_w, width, Image.Resampling.BILINEAR)))
        weight = shrink[0] @ alpha @ shrink[1] + 1e-6
        total = smooth[0] @ weight @ smooth[1]

        def single(*matrices):  # float32: the products' cost is writing the face-sized result
            return tuple(matrix.astype(np.float32) for matrix in matrices)

        return _SkinField(single(*shrink), *single(weight), single(*smooth), *single(total), single(*grow))

    def chroma(self, planes: np.ndarray) -> np.ndarray:
        """The face's chroma (2 x H x W float32: Cb and Cr of the photo's box, less 128) smoothed
        over a fifth of the face with a Gaussian normalised by the blend mask, so only the face's own
        pixels (not hair or background) set the tone: skin tone and the colour of the light stay,
        local colour (lipstick, eye shadow, blush) goes. Computed with the face shrunk to SKIN_FIELD
        pixels (box filter), so the cost does not grow with the face's size in the photo. The
        filters' rows sum to one, so an offset of the chroma passes through unchanged."""
        shrunk = self.shrink[0] @ planes @ self.shrink[1]
        tone = (self.smooth[0] @ (shrunk * self.weight) @ self.smooth[1]) / self.total
        return self.grow[0] @ tone @ self.grow[1]


def _resized(plane: np.ndarray, size: tuple, method) -> np.ndarray:
    """A float plane resized by Pillow (mode "F") to size = (width, height)."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(plane, np.float32)).resize(size, method), np.float64)


@dataclass(frozen=True)
class _Placement:
    """Where an aligned face goes in a photo: the aligned frame at the face's own resolution in the
    photo (side x side, so the last warp is a turn and a shift, not an upsampling), the photo's box
    it covers, the affine map from the box to that frame, and the blend mask in the box (exactly 0
    where it leaves the photo as it is) with its skin field."""

    side: int
    box: tuple
    shifted: np.ndarray
    alpha: np.ndarray = None
    skin: _SkinField = None

    identity: bool = False  # the box is the aligned frame itself (an aligned crop in the model's geometry)

    def place(self, field: np.ndarray) -> np.ndarray:
        """An aligned-frame field (any square size) -> the photo's box: Lanczos to side x side,
        then a bicubic turn and shift (neither where they would change nothing)."""
        field = np.ascontiguousarray(field, np.float32)
        if field.shape[0] == self.side and self.identity:
            return field
        image = Image.fromarray(field)  # mode "F"
        if field.shape[0] != self.side:
            image = image.resize((self.side, self.side), Image.Resampling.LANCZOS)
        x0, y0, x1, y1 = self.box
        placed = image.transform((x1 - x0, y1 - y0), Image.Transform.AFFINE, data=tuple(self.shifted.ravel()),
                                 resample=Image.Resampling.BICUBIC)
        return np.asarray(placed, dtype=np.float32)


@functools.lru_cache(maxsize=64)
def _placement(shape, left_eye, right_eye, mouth_aligned, size, mask, feather) -> _Placement | None:
    """Cached: in aligned mode every crop of a database has the same geometry, so the mask is made
    once; None when the face lies outside the photo."""
    eye_distance = float(np.hypot(right_eye[0] - left_eye[0], right_eye[1] - left_eye[1]))
    side = int(np.clip(round(eye_distance / (ALIGNED_RIGHT_EYE[0] - ALIGNED_LEFT_EYE[0])), 4, 8192))
    forward = eye_alignment_matrix(left_eye, right_eye, side)
    inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))
    corners = inverse @ np.array([[0, side, 0, side], [0, 0, side, side], [1, 1, 1, 1]], dtype=np.float64)
    height, width = shape
    x0, y0 = max(int(np.floor(corners[0].min())), 0), max(int(np.floor(corners[1].min())), 0)
    x1, y1 = min(int(np.ceil(corners[0].max())), width), min(int(np.ceil(corners[1].max())), height)
    if x1 <= x0 or y1 <= y0:
        return None
    shifted = forward @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    identity = (x1 - x0, y1 - y0) == (side, side) and _is_identity(shifted)
    placement = _Placement(side, (x0, y0, x1, y1), shifted, identity=identity)
    alpha = np.clip(placement.place(face_mask(size, mouth_aligned, feather, mask)), 0.0, 1.0)
    # Where the mask is (nearly) 0 it is exactly 0, so the change there is exactly 0 and the photo's
    # own bytes stay (the paste's rounding gives them back: x + 0 + 0.5, truncated, is x).
    alpha = np.where(alpha > 1e-3, alpha, np.float32(0.0))
    alpha.setflags(write=False)  # shared between calls
    return dataclasses.replace(placement, alpha=alpha, skin=_SkinField.of(alpha, side))


def paste_face(pixels: np.ndarray, sanitized: np.ndarray, model_input: np.ndarray, left_eye, right_eye,
               mouth=None, paste: str = "edit", mask: str = "face", color: str = "skin",
               feather: float = 0.08) -> np.ndarray:
    """Puts one sanitized face back into the photo it was aligned from; the inverse of `align_face`.

    `sanitized` and `model_input` are the model's S x S gray output and the gray aligned face it was
    given (`to_gray_float(align_face(pixels, left_eye, right_eye, S))`), floats in [0, 1]; `mouth`
    is the detector's mouth centre in photo coordinates, or None (the average face's).

    * paste "edit": the sanitizer's change (output - input) is added to the photo's own luminance,
      so the photo keeps its resolution, grain and lighting and only what the model changed
      changes. Detail finer than the model's S x S crop is the photo's own: a classifier working at
      a higher resolution than the model sees it as it was. paste "face": the luminance becomes the
      model's face itself, its mean and contrast matched to the photo's under the mask (no detail
      finer than S x S survives; the face looks softer than the rest of the photo).
    * Fields are upsampled to the face's size in the photo with a Lanczos filter, then turned and
      placed with bicubic interpolation (an aligned crop already in the model's frame needs neither).
    * mask "face": blended through a face-shaped oval from the landmarks (`face_mask`); "crop": the
      aligned square, as the evaluator judged it. `feather` is the soft edge, a fraction of S.
    * color: the model outputs luminance only. "skin": the face's chroma becomes its own smoothed
      skin tone (`_SkinField.chroma`): local colour such as make-up goes, the skin's hue stays.
      "gray": the face's chroma is removed. "keep-chroma": the photo's chroma is kept as it is.
    Only the face's bounding box is touched; outside the mask the photo's bytes are unchanged.
    The blend is done in YCbCr, as a change: the photo's box plus alpha times the RGB image of the
    new minus the old luminance and chroma (the colour conversions are linear).
    """
    if paste not in PASTE_MODES:
        raise ValueError(f"paste {paste!r}: use one of {', '.join(PASTE_MODES)}")
    if color not in COLOR_MODES:
        raise ValueError(f"color {color!r}: use one of {', '.join(COLOR_MODES)}")
    size = sanitized.shape[0]
    output = np.clip(np.asarray(sanitized, np.float32).reshape(size, size), 0.0, 1.0)
    given = np.clip(np.asarray(model_input, np.float32).reshape(size, size), 0.0, 1.0)
    unit = eye_alignment_matrix(left_eye, right_eye, 1.0)
    mouth_aligned = DEFAULT_ALIGNED_MOUTH if mouth is None else tuple(unit @ np.array([mouth[0], mouth[1], 1.0]))
    placement = _placement(pixels.shape[:2], tuple(map(float, left_eye)), tuple(map(float, right_eye)),
                           tuple(map(float, mouth_aligned)), size, mask, float(feather))
    if placement is None:
        return pixels.copy()
    (x0, y0, x1, y1), alpha = placement.box, placement.alpha
    original = pixels[y0:y1, x0:x1]
    # Channel-planar float32 (3 x h x w), so each colour map is one matrix product over all pixels
    # and every step writes one plane-sized result (the cost of a paste is passes over the box).
    box = np.ascontiguousarray(np.moveaxis(original, -1, 0), dtype=np.float32)
    planes = box.reshape(3, -1)
    if paste == "edit":
        luma_change = 255.0 * placement.place(output - given)
    else:
        luma = (_TO_YCC[0] @ planes).reshape(alpha.shape)
        face = 255.0 * placement.place(output)
        total = alpha.sum() + 1e-6
        mean_face, mean_photo = (face * alpha).sum() / total, (luma * alpha).sum() / total
        std_face = np.sqrt((((face - mean_face) ** 2) * alpha).sum() / total) + 1e-6
        std_photo = np.sqrt((((luma - mean_photo) ** 2) * alpha).sum() / total)
        luma_change = mean_photo + (face - mean_face) * float(np.clip(std_photo / std_face, 0.5, 2.0)) - luma
    luma_change *= alpha
    # RGB from YCbCr: every channel moves with Y one for one, and with Cb/Cr by _CHROMA_TO_RGB.
    if color == "keep-chroma":
        change = np.broadcast_to(luma_change, box.shape)
    else:
        chroma = (_TO_YCC[1:] @ planes).reshape(2, *alpha.shape)  # Cb, Cr less 128
        # gray: the target is 128, i.e. 0 here
        chroma_change = (placement.skin.chroma(chroma) - chroma) if color == "skin" else np.negative(chroma)
        chroma_change *= alpha
        change = (_CHROMA_TO_RGB @ chroma_change.reshape(2, -1)).reshape(box.shape)
        change += luma_change
    box += change
    box += 0.5
    np.clip(box, 0, 255, out=box)
    blended = _interleaved(box.astype(np.uint8))  # rounded (+0.5, truncated); untouched pixels as they were
    if blended.shape == pixels.shape:
        return blended
    out = pixels.copy()
    out[y0:y1, x0:x1] = blended
    return out


def _interleaved(planes: np.ndarray) -> np.ndarray:
    """3 x H x W uint8 planes -> a C-ordered H x W x 3 array. A strided view (np.moveaxis) would
    cost its reader a copy: Pillow's JPEG encoder took 0.81 ms instead of 0.20 ms on one aligned
    224x224 face; Pillow's merge interleaves the planes faster than numpy's transposing copies (0.1
    against 0.3-0.4 ms; 2-core AMD EPYC build machine, 2026-12-07)."""
    merged = Image.merge("RGB", [Image.fromarray(plane) for plane in planes])
    return np.asarray(merged)


def to_gray_float(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxWx1 float32 gray in [0, 1], as trainer.preprocessing.to_model_input."""
    return (rgb.astype(np.float32) / 255.0 @ _LUMA)[:, :, None]
