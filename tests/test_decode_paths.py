"""The PIL/numpy decode path and the TensorFlow decode path give the same gray face.

CelebA ingestion and the Beam bulk job decode with `components.faces.imaging.decode_image` +
`to_gray_float`; the training input pipeline and the exported model's `serving_default` (which
takes encoded bytes) decode with `trainer.preprocessing.decode_face_images` + `to_model_input`.
Both are fed the SAME encoded bytes here, S x S so that no resizing happens, and their gray faces
(float in [0, 1]) must agree within one 8-bit level.
"""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.faces.imaging import decode_image, to_gray_float
from trainer.preprocessing import decode_face_images, to_model_input

S = 64
TOLERANCE = 1.0 / 255.0
SEED = 20240611


def _rgb(seed: int = SEED) -> np.ndarray:
    """S x S x 3 uint8: smooth colour gradients, a sinusoidal texture, a hard-edged patch and
    Gaussian noise from a fixed seed, so JPEG quantisation and chroma subsampling both matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:S, 0:S] / (S - 1)
    red = 0.15 + 0.7 * x
    green = 0.2 + 0.6 * y
    blue = 0.5 + 0.2 * np.sin(2 * np.pi * (2 * x + y))
    image = np.stack([red, green, blue], axis=-1) * 255.0
    image[S // 4:S // 2, S // 2:3 * S // 4] = (230.0, 40.0, 60.0)  # sharp colour edges
    image += rng.normal(0.0, 12.0, image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _gray16() -> np.ndarray:
    """S x S uint16 gray using the full 0..65535 range (so 16 -> 8 bit scaling is exercised)."""
    rng = np.random.default_rng(SEED + 16)
    y, x = np.mgrid[0:S, 0:S] / (S - 1)
    values = (0.7 * x + 0.3 * y) * 65535.0 + rng.normal(0.0, 1500.0, (S, S))
    values = np.clip(values, 0, 65535).astype(np.uint16)
    values[0, 0], values[-1, -1] = 0, 65535
    return values


def _alpha() -> np.ndarray:
    """S x S uint8 alpha: transparent on the left, opaque on the right, with noise."""
    rng = np.random.default_rng(SEED + 4)
    x = np.mgrid[0:S, 0:S][1] / (S - 1)
    return np.clip(255.0 * x + rng.normal(0.0, 20.0, (S, S)) + 0.5, 0, 255).astype(np.uint8)


def _palette() -> Image.Image:
    return Image.fromarray(_rgb()).quantize(colors=64)


# id -> (encoded bytes, the PIL mode the bytes open as, PIL's format name)
CASES = {
    "rgb_jpeg": (lambda: _encode(Image.fromarray(_rgb()), "JPEG", quality=90), "RGB", "JPEG"),
    "rgb_png": (lambda: _encode(Image.fromarray(_rgb()), "PNG"), "RGB", "PNG"),
    "gray_jpeg": (lambda: _encode(Image.fromarray(_rgb()).convert("L"), "JPEG", quality=90), "L", "JPEG"),
    "gray_png": (lambda: _encode(Image.fromarray(_rgb()).convert("L"), "PNG"), "L", "PNG"),
    "cmyk_jpeg": (lambda: _encode(Image.fromarray(_rgb()).convert("CMYK"), "JPEG", quality=90), "CMYK", "JPEG"),
    "gray16_png": (lambda: _encode(Image.fromarray(_gray16()), "PNG"), "I;16", "PNG"),
    "rgba_opaque_png": (
        lambda: _encode(Image.fromarray(np.dstack([_rgb(), np.full((S, S), 255, np.uint8)])), "PNG"), "RGBA", "PNG"),
    "palette_png": (lambda: _encode(_palette(), "PNG"), "P", "PNG"),
    # A dark 16-bit image (every value below 256) is still 16-bit: nearly black on both paths.
    "dark_gray16_png": (lambda: _encode(Image.fromarray((_gray16() // 257).astype(np.uint16)), "PNG"), "I;16", "PNG"),
    # Transparency: both paths composite on white.
    "rgba_png": (lambda: _encode(Image.fromarray(np.dstack([_rgb(), _alpha()])), "PNG"), "RGBA", "PNG"),
    "palette_trns_png": (lambda: _encode(_palette(), "PNG", transparency=0), "P", "PNG"),
}

AGREEING = list(CASES)


def _case(name: str) -> bytes:
    build, mode, fmt = CASES[name]
    data = build()
    with Image.open(io.BytesIO(data)) as image:  # the bytes really are the kind of image named
        assert (image.format, image.mode, image.size) == (fmt, mode, (S, S))
    return data


def _pil_gray(data: bytes, fmt: str) -> np.ndarray:
    decoded = decode_image(data)  # raises ImageRejected if the PIL path rejects the input
    assert decoded.source_format == fmt
    assert decoded.pixels.shape == (S, S, 3) and decoded.pixels.dtype == np.uint8
    gray = to_gray_float(decoded.pixels)
    assert gray.shape == (S, S, 1) and gray.dtype == np.float32
    return gray


def _tf_gray(data: bytes) -> np.ndarray:
    rgb = decode_face_images(tf.constant([data]), S)
    assert tuple(rgb.shape) == (1, S, S, 3)
    gray = to_model_input(rgb).numpy()
    assert gray.shape == (1, S, S, 1) and gray.dtype == np.float32
    return gray[0]


def _max_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape == (S, S, 1)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


@pytest.mark.parametrize("name", AGREEING)
def test_pil_and_tf_paths_give_the_same_gray_face(name):
    data = _case(name)
    pil = _pil_gray(data, CASES[name][2])
    tf_gray = _tf_gray(data)
    for gray in (pil, tf_gray):  # not constant, and in range: a comparison of flat images proves little
        assert 0.0 <= gray.min() and gray.max() <= 1.0
        if name == "dark_gray16_png":
            assert gray.max() < 2.0 / 255.0  # 16-bit values below 256 are nearly black, not stretched
            continue
        assert gray.std() > 0.05 and np.ptp(gray) > 0.4
        assert len(np.unique(gray)) > 40  # the palette image has 64 colours
    difference = _max_abs_difference(pil, tf_gray)
    print(f"{name}: max |PIL - TF| = {difference * 255:.4f}/255")
    assert difference <= TOLERANCE, f"{name}: gray faces differ by {difference * 255:.3f}/255"


@pytest.mark.parametrize("name", ["rgb_jpeg", "gray_jpeg", "cmyk_jpeg"])
def test_jpeg_is_decoded_with_the_accurate_idct(name):
    """Why trainer.preprocessing.decode_rgb does not use tf.io.decode_image for JPEG: that decodes
    with libjpeg's fast integer IDCT (no dct_method argument), Pillow with the accurate one, and
    the gray faces then differ by 1-3/255 (more at high JPEG quality)."""
    from trainer.preprocessing import decode_rgb

    data = _case(name)
    pil = decode_image(data).pixels
    np.testing.assert_array_equal(decode_rgb(tf.constant(data)).numpy(), pil)
    fast = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    assert np.abs(fast.astype(int) - pil.astype(int)).max() >= 1
