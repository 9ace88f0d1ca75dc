import io

import numpy as np
import pytest
from PIL import Image

from components.faces.imaging import (
    ALIGNED_LEFT_EYE, ALIGNED_RIGHT_EYE, ImageRejected, align_face, celeba_landmark_to_point, decode_image,
    encode_png, eye_alignment_matrix,
)


def _dot_image(points, shape=(218, 178), sigma=3.0):
    """Smooth Gaussian dots centred on the given pixels (smooth, so resampling keeps the centroid)."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    image = np.zeros(shape)
    for x, y in points:
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def _centroid(channel, mask):
    ys, xs = np.mgrid[0:channel.shape[0], 0:channel.shape[1]]
    weight = channel * mask
    return (weight * xs).sum() / weight.sum() + 0.5, (weight * ys).sum() / weight.sum() + 0.5


@pytest.mark.parametrize("size", [32, 64, 224])
@pytest.mark.parametrize("eyes", [((69, 111), (108, 111)), ((60, 100), (110, 125)), ((80, 130), (100, 90))])
def test_alignment_puts_eyes_on_canonical_positions(size, eyes):
    image = _dot_image(eyes)
    aligned = align_face(image, *(celeba_landmark_to_point(*eye) for eye in eyes), size).astype(float)[:, :, 0]
    xs = np.arange(size)[None, :].repeat(size, 0)
    left = _centroid(aligned, xs < size / 2)
    right = _centroid(aligned, xs >= size / 2)
    # A 3x3 dot is blurred by bilinear sampling; its centroid must stay within a quarter pixel
    # (source pixels are 0.2-1.7 output pixels at these sizes).
    np.testing.assert_allclose(left, np.array(ALIGNED_LEFT_EYE) * size, atol=0.25)
    np.testing.assert_allclose(right, np.array(ALIGNED_RIGHT_EYE) * size, atol=0.25)


def test_alignment_matrix_is_a_similarity_mapping_eyes_exactly():
    matrix = eye_alignment_matrix((10.0, 20.0), (30.0, 50.0), 100)
    for source, target in [((10.0, 20.0), ALIGNED_LEFT_EYE), ((30.0, 50.0), ALIGNED_RIGHT_EYE)]:
        np.testing.assert_allclose(matrix @ [*source, 1.0], np.array(target) * 100, atol=1e-9)
    linear = matrix[:, :2]
    np.testing.assert_allclose(linear @ linear.T, np.eye(2) * np.linalg.det(linear), atol=1e-9)


def test_coincident_eyes_are_rejected():
    with pytest.raises(ImageRejected) as error:
        eye_alignment_matrix((5, 5), (5, 5), 64)
    assert error.value.reason == "bad_landmarks"


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_decode_converts_every_mode_to_rgb8():
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    cases = {
        "jpeg": _encode(rgb, "JPEG"),
        "gray": _encode(rgb.convert("L"), "PNG"),
        "alpha": _encode(rgb.convert("RGBA"), "PNG"),
        "cmyk": _encode(rgb.convert("CMYK"), "JPEG"),
        "16bit": _encode(Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16)), "PNG"),
        "palette": _encode(rgb.convert("P"), "PNG"),
    }
    for name, data in cases.items():
        decoded = decode_image(data)
        assert decoded.pixels.shape == (20, 30, 3), name
        assert decoded.pixels.dtype == np.uint8, name
    sixteen = decode_image(cases["16bit"]).pixels[:, :, 0].astype(int)
    assert sixteen.max() > 200 and sixteen.min() == 0  # scaled down, not clipped to 255


def test_decode_alpha_composites_on_white():
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert (decode_image(_encode(transparent, "PNG")).pixels == 255).all()


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"this is a text file, not a JPEG", "undecodable"),
])
def test_decode_rejects_bad_bytes(data, reason):
    with pytest.raises(ImageRejected) as error:
        decode_image(data)
    assert error.value.reason == reason
    with pytest.raises(ImageRejected) as again:
        decode_image(data)
    assert error.value.detail == again.value.detail  # no object address: the same on every run
    assert " at 0x" not in error.value.detail


def test_decode_rejects_truncated_jpeg():
    data = _encode(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG")
    with pytest.raises(ImageRejected) as error:
        decode_image(data[: len(data) // 2])
    assert error.value.reason == "undecodable"


def test_decode_rejects_too_many_pixels_before_decoding():
    data = _encode(Image.new("L", (300, 300)), "PNG")
    with pytest.raises(ImageRejected) as error:
        decode_image(data, max_pixels=10_000)
    assert error.value.reason == "too_large"


def test_png_roundtrip_is_lossless():
    pixels = np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(encode_png(pixels)).pixels, pixels)


@pytest.mark.parametrize("orientation, turned", [
    (1, lambda a: a), (2, lambda a: a[:, ::-1]), (3, lambda a: a[::-1, ::-1]), (4, lambda a: a[::-1]),
    (5, lambda a: a.transpose(1, 0, 2)), (6, lambda a: np.rot90(a, -1)), (7, lambda a: np.rot90(a, 2).transpose(1, 0, 2)),
    (8, lambda a: np.rot90(a, 1))])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decode_applies_the_exif_orientation(orientation, turned, fmt):
    """The pixels come upright as EXIF says the photo is to be shown (6: turn 90 degrees clockwise)."""
    rng = np.random.default_rng(orientation)
    pixels = np.repeat(np.repeat(rng.integers(0, 256, (3, 5, 3), dtype=np.uint8), 8, axis=0), 8, axis=1)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, fmt, exif=exif.tobytes(), **({"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}))
    decoded = decode_image(buffer.getvalue()).pixels
    expected = turned(pixels)
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected).mean() < (0.5 if fmt == "PNG" else 3)
