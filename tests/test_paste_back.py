"""Paste-back (components/faces/imaging.py:paste_face): a face-shaped mask from the landmarks, the
sanitizer's change at the photo's resolution with a proper filter, the photo's lighting and a skin
tone in place of the face's local colour. Photos here are drawn (a skin-coloured oval with red
lips on a textured background), not real faces."""

import numpy as np
import pytest

from components.faces.imaging import (
    ALIGNED_LEFT_EYE, ALIGNED_RIGHT_EYE, DEFAULT_ALIGNED_MOUTH, _rgb_to_ycbcr, align_face, face_mask, paste_face,
    to_gray_float,
)

S = 32
SKIN, LIPS, BACKGROUND = (205, 150, 120), (190, 40, 60), (60, 90, 140)


def _photo(eye_distance=60.0, centre=(200.0, 170.0)):
    """A 400x360 drawing: background stripes, a skin oval, red lips; and its eye and mouth centres."""
    height, width = 360, 400
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    pixels = np.empty((height, width, 3), np.float64)
    pixels[:] = BACKGROUND
    pixels += (20 * np.sin(xs / 7.0))[..., None]  # texture, so a blurred patch would show
    cx, cy = centre
    left, right = (cx - eye_distance / 2, cy), (cx + eye_distance / 2, cy)
    mouth = (cx, cy + 1.13 * eye_distance)
    face = ((xs - cx) / (1.1 * eye_distance)) ** 2 + ((ys - cy - 0.4 * eye_distance) / (1.5 * eye_distance)) ** 2 < 1
    pixels[face] = SKIN
    lips = (np.abs(xs - mouth[0]) < 0.35 * eye_distance) & (np.abs(ys - mouth[1]) < 0.08 * eye_distance)
    pixels[lips] = LIPS
    return np.clip(pixels, 0, 255).astype(np.uint8), left, right, mouth


def _model_input(pixels, left, right):
    return to_gray_float(align_face(pixels, left, right, S))


def test_face_mask_is_an_oval_from_forehead_to_chin_that_follows_the_mouth():
    mask = face_mask(64)
    assert mask[32, 32] == pytest.approx(1.0)
    assert mask[1, 1] == mask[62, 1] == mask[1, 62] == mask[62, 62] == 0.0  # no square corners
    assert mask[32, 2] == mask[32, 61] == 0.0  # beside the cheeks
    assert mask[4, 32] > 0 and mask[60, 32] > 0  # forehead and chin inside
    assert 0.0 < mask[32, 12] < 1.0  # the soft edge
    assert np.allclose(mask, mask[:, ::-1], atol=1e-6)  # symmetric for a centred mouth
    eye_distance = ALIGNED_RIGHT_EYE[0] - ALIGNED_LEFT_EYE[0]
    high = face_mask(64, (0.5, ALIGNED_LEFT_EYE[1] + 0.8 * eye_distance))
    assert high.sum() < mask.sum() and high[60, 32] < mask[60, 32]  # a shorter face, a shorter oval
    crop = face_mask(64, shape="crop")
    assert crop[1, 1] > 0 and crop[32, 32] == 1.0


def test_an_unchanged_face_leaves_the_photo_as_it_was():
    pixels, left, right, mouth = _photo()
    given = _model_input(pixels, left, right)
    out = paste_face(pixels, given, given, left, right, mouth, paste="edit", color="keep-chroma")
    assert np.abs(out.astype(int) - pixels).max() <= 1  # the colour round trip's rounding only


def test_the_change_is_added_inside_the_oval_only():
    pixels, left, right, mouth = _photo()
    given = _model_input(pixels, left, right)
    out = paste_face(pixels, np.clip(given + 0.2, 0, 1), given, left, right, mouth, paste="edit",
                     color="keep-chroma")
    luma = lambda image: _rgb_to_ycbcr(image.astype(np.float64))[..., 0]  # noqa: E731
    gain = luma(out) - luma(pixels)
    cheek = (int(left[1]) + 20, int(left[0]))
    assert gain[cheek] == pytest.approx(51, abs=4)  # +0.2 of full scale, at the photo's resolution
    # The aligned square reaches 1/0.3 eye distances = 200 px around the face; its corners, outside
    # the oval, are the photo's own bytes.
    side = (right[0] - left[0]) / (ALIGNED_RIGHT_EYE[0] - ALIGNED_LEFT_EYE[0])
    x0, y0 = int(left[0] - ALIGNED_LEFT_EYE[0] * side), int(left[1] - ALIGNED_LEFT_EYE[1] * side)
    for y, x in ((y0 + 5, x0 + 5), (y0 + 5, x0 + int(side) - 5), (y0 + int(side) - 5, x0 + 5)):
        assert (out[y, x] == pixels[y, x]).all(), (y, x)
    assert (out[:, :60] == pixels[:, :60]).all()  # far from the face nothing changes


def test_the_change_is_upsampled_smoothly_not_in_blocks():
    """A 32x32 change placed on a face 200 px wide: a proper filter gives no steps of 6 px blocks."""
    pixels, left, right, mouth = _photo()
    given = _model_input(pixels, left, right)
    ramp = np.linspace(0.0, 0.3, S, dtype=np.float32)[None, :, None] * np.ones((S, 1, 1), np.float32)
    out = paste_face(pixels, np.clip(given + ramp, 0, 1), given, left, right, mouth, paste="edit",
                     color="keep-chroma")
    gain = (_rgb_to_ycbcr(out.astype(np.float64)) - _rgb_to_ycbcr(pixels.astype(np.float64)))[..., 0]
    row = gain[int(left[1]) + 25, int(left[0]) - 10:int(right[0]) + 10]
    steps = np.diff(row)
    assert row[-1] - row[0] > 10  # the ramp arrived
    assert steps.max() < 2.5  # ~0.3 * 255 / 200 px per pixel, and no jumps at block edges


def test_paste_face_matches_the_photos_lighting():
    pixels, left, right, mouth = _photo()
    given = _model_input(pixels, left, right)
    dark = given * 0.4  # a face from a model that lost the brightness
    out = paste_face(pixels, dark, given, left, right, mouth, paste="face", color="keep-chroma")
    luma = lambda image: _rgb_to_ycbcr(image.astype(np.float64))[..., 0]  # noqa: E731
    cheek = (slice(int(left[1]) + 10, int(left[1]) + 30), slice(int(left[0]) - 10, int(left[0]) + 10))
    assert abs(luma(out)[cheek].mean() - luma(pixels)[cheek].mean()) < 12


@pytest.mark.parametrize("color", ["skin", "gray", "keep-chroma"])
def test_colour_modes(color):
    pixels, left, right, mouth = _photo()
    given = _model_input(pixels, left, right)
    out = paste_face(pixels, given, given, left, right, mouth, paste="edit", color=color)
    chroma = _rgb_to_ycbcr(out.astype(np.float64))[..., 1:]
    skin = _rgb_to_ycbcr(np.array(SKIN, np.float64))[1:]
    lips = _rgb_to_ycbcr(np.array(LIPS, np.float64))[1:]
    at_lips = chroma[int(mouth[1]), int(mouth[0])]
    at_cheek = chroma[int(left[1]) + 20, int(left[0])]
    if color == "skin":  # the lips take the skin's tone; the face is not gray
        assert np.abs(at_lips - skin).max() < 0.25 * np.abs(lips - skin).max()
        assert np.abs(at_cheek - skin).max() < 6
    elif color == "gray":
        assert np.abs(at_lips - 128).max() < 2 and np.abs(at_cheek - 128).max() < 2
    else:
        assert np.abs(at_lips - lips).max() < 3


def test_a_small_face_is_pasted_without_touching_its_neighbourhood():
    pixels, left, right, mouth = _photo(eye_distance=9.0)
    given = _model_input(pixels, left, right)
    out = paste_face(pixels, np.clip(given + 0.2, 0, 1), given, left, right, mouth)
    changed = np.argwhere(np.abs(out.astype(int) - pixels).max(axis=2) > 0)
    assert len(changed) > 0
    assert changed[:, 0].min() > left[1] - 20 and changed[:, 0].max() < left[1] + 30


def test_a_bad_mouth_landmark_falls_back_to_the_average_face():
    assert np.array_equal(face_mask(48, (0.5, 0.42)), face_mask(48, DEFAULT_ALIGNED_MOUTH))


def _aligned_crop(size=S, seed=0):
    """A size x size crop already in the model's frame (eyes at the aligned positions), noise."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    left = (ALIGNED_LEFT_EYE[0] * size, ALIGNED_LEFT_EYE[1] * size)
    right = (ALIGNED_RIGHT_EYE[0] * size, ALIGNED_RIGHT_EYE[1] * size)
    return pixels, left, right


def test_a_crop_in_the_models_frame_is_not_warped_and_gets_what_the_warps_would_give():
    from PIL import Image

    from components.faces.imaging import _placement

    pixels, left, right = _aligned_crop()
    aligned = align_face(pixels, left, right, S)
    identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    warped = np.asarray(Image.fromarray(pixels).transform((S, S), Image.Transform.AFFINE, data=identity,
                                                          resample=Image.Resampling.BILINEAR))
    assert aligned is pixels and np.array_equal(aligned, warped)  # skipped, and nothing lost by skipping
    placement = _placement((S, S), left, right, DEFAULT_ALIGNED_MOUTH, S, "face", 0.08)
    assert placement.identity and placement.box == (0, 0, S, S)
    field = np.random.default_rng(1).uniform(-1, 1, (S, S)).astype(np.float32)
    turned = np.asarray(Image.fromarray(field).transform((S, S), Image.Transform.AFFINE, data=identity,
                                                         resample=Image.Resampling.BICUBIC))
    assert np.allclose(placement.place(field), turned, atol=1e-5)
    # one pixel off the frame's geometry: warped as before (and so not the identity)
    shifted = _placement((S, S), (left[0] + 1, left[1]), (right[0] + 1, right[1]), DEFAULT_ALIGNED_MOUTH, S, "face",
                         0.08)
    assert not shifted.identity


@pytest.mark.parametrize("color", ["gray", "keep-chroma"])
@pytest.mark.parametrize("mask", ["crop", "face"])
def test_the_blend_is_the_photo_blended_in_ycbcr_with_the_new_luminance_and_chroma(color, mask):
    """paste_face adds alpha times the RGB image of the YCbCr change; that equals blending the
    photo's and the new YCbCr through the mask and converting back (to one level of rounding)."""
    pixels, left, right = _aligned_crop(seed=2)
    given = _model_input(pixels, left, right)
    change = np.random.default_rng(3).uniform(-0.2, 0.2, given.shape).astype(np.float32)
    sanitized = np.clip(given + change, 0, 1)
    out = paste_face(pixels, sanitized, given, left, right, None, paste="edit", mask=mask, color=color)
    alpha = face_mask(S, shape=mask)[..., None]
    ycc = _rgb_to_ycbcr(pixels.astype(np.float64))
    new = ycc.copy()
    new[..., 0] += 255.0 * (sanitized - given)[..., 0]
    if color == "gray":
        new[..., 1:] = 128.0
    y, cb, cr = np.moveaxis(alpha * new + (1 - alpha) * ycc, -1, 0)
    cb, cr = cb - 128.0, cr - 128.0
    expected = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    expected = np.clip(expected + 0.5, 0, 255).astype(np.uint8)
    touched = alpha[..., 0] > 1e-3
    assert np.abs(out.astype(int) - expected)[touched].max() <= 1
    assert np.array_equal(out[~touched], pixels[~touched])


@pytest.mark.parametrize("aligned", [True, False])
def test_the_pasted_photo_is_c_ordered_so_the_encoder_reads_it_without_a_copy(aligned):
    """A strided H x W x 3 view of the planar blend made Pillow's JPEG encoder copy it first (0.81
    against 0.20 ms per aligned 224x224 face on the build machine): the result is interleaved."""
    pixels, left, right = _aligned_crop() if aligned else _photo()[:3]
    given = _model_input(pixels, left, right)
    out = paste_face(pixels, np.clip(given + 0.1, 0, 1), given, left, right)
    assert out.shape == pixels.shape and out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]
    assert not np.array_equal(out, pixels)  # something was pasted
