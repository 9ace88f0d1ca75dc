"""The drawing surface of the synthetic faces: a supersampled canvas that takes canonical-frame
points, the random background, and the capture effects (blur, light, exposure, sensor noise).

Polygons are drawn at SS x resolution and box-downsampled, which anti-aliases every edge. The
canvas's pose transform (one similarity per image) also maps the landmarks, so they are exact by
construction.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from components.synthetic.geometry import stroke
from components.synthetic.people import HEIGHT, WIDTH, ImageParams

SS = 2  # supersampling factor
POSE_CENTRE = np.array([88.5, 125.0])

_NOISE = np.random.default_rng(12345).standard_normal((HEIGHT + 64, WIDTH + 64, 3), dtype=np.float32)
_LY, _LX = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
_LX = (_LX - WIDTH / 2) / (WIDTH / 2)
_LY = (_LY - HEIGHT / 2) / (HEIGHT / 2)


def _rgb(colour):
    r, g, b = colour
    return (int(min(255.0, max(0.0, r)) + 0.5), int(min(255.0, max(0.0, g)) + 0.5), int(min(255.0, max(0.0, b)) + 0.5))


def scale(colour, k):
    return tuple(v * k for v in colour)


class Canvas:
    """A supersampled RGB image whose drawing calls take canonical-frame points."""

    def __init__(self, bg: Image.Image, im: ImageParams, rng: np.random.Generator):
        self.img = bg
        self.draw = ImageDraw.Draw(self.img)
        self.rng = rng
        a = math.radians(im.roll_deg)
        self._m = im.scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        self._t = POSE_CENTRE + np.array([im.tx, im.ty])

    def pose(self, pts):
        """Canonical frame -> output-image pixel coordinates (the landmark transform)."""
        return (np.asarray(pts, float) - POSE_CENTRE) @ self._m.T + self._t

    def _xy(self, pts):
        # PIL polygon coordinates are continuous (pixel i spans [i, i+1)), so the centre of output
        # pixel l, i.e. supersampled pixels SS*l .. SS*l+SS-1, sits at SS*l + SS/2.
        return self.pose(pts) * SS + SS / 2

    def fill(self, pts, colour):
        self.draw.polygon(self._xy(pts).ravel().tolist(), fill=_rgb(colour))

    def blend(self, polys, colour, alpha, density=None):
        """Alpha-blends polygons; with density, only a random fraction of pixels (hair texture)."""
        qs = [self._xy(p) for p in polys]
        if not qs:
            return
        allq = np.vstack(qs)
        x0, y0 = np.maximum(np.floor(allq.min(0)).astype(int) - 1, 0)
        x1 = min(int(math.ceil(allq[:, 0].max())) + 2, self.img.width)
        y1 = min(int(math.ceil(allq[:, 1].max())) + 2, self.img.height)
        if x1 <= x0 or y1 <= y0:
            return
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        md = ImageDraw.Draw(mask)
        for q in qs:
            md.polygon((q - (x0, y0)).ravel().tolist(), fill=int(round(255 * alpha)))
        if density is not None:
            m = np.asarray(mask) * (self.rng.random((y1 - y0, x1 - x0)) < density)
            mask = Image.fromarray(m.astype(np.uint8))
        self.img.paste(_rgb(colour), (x0, y0, x1, y1), mask)

    def line(self, pts, width, colour, alpha=1.0, width_end=None, closed=False):
        poly = stroke(pts, width, width_end, closed)
        if alpha >= 1.0:
            self.fill(poly, colour)
        else:
            self.blend([poly], colour, alpha)


@functools.lru_cache(maxsize=None)
def _gradient(direction: int) -> Image.Image:
    """0..255 ramp across the supersampled canvas in one of 32 directions (built once, reused)."""
    a = direction * 2 * math.pi / 32
    gy, gx = np.mgrid[0:HEIGHT * SS, 0:WIDTH * SS].astype(np.float32)
    t = (math.cos(a) * (gx / (WIDTH * SS) * 2 - 1) + math.sin(a) * (gy / (HEIGHT * SS) * 2 - 1))
    return Image.fromarray(np.clip(127.5 + 127.5 * t, 0, 255).astype(np.uint8))


def background(rng: np.random.Generator) -> Image.Image:
    """Two-colour gradient in a random direction, coloured through per-channel lookup tables."""
    c1, c2 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ramp = _gradient(int(rng.integers(32)))
    k = np.arange(256) / 255.0
    return Image.merge("RGB", [ramp.point([int(a + (b - a) * v + 0.5) for v in k]) for a, b in zip(c1, c2)])


def background_shapes(cv: Canvas, rng: np.random.Generator):
    d = cv.draw
    for _ in range(int(rng.integers(2, 7))):
        x, y = rng.uniform(-20, WIDTH * SS + 20), rng.uniform(-20, HEIGHT * SS + 20)
        w, h = rng.uniform(15, 120, 2)
        col = _rgb(rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        if kind == 0:
            d.ellipse([x - w, y - h, x + w, y + h], fill=col)
        elif kind == 1:
            d.rectangle([x - w, y - h, x + w, y + h], fill=col)
        else:
            d.line([x - w, y - h, x + w, y + h], fill=col, width=int(rng.integers(3, 14)))


def capture(img: Image.Image, im: ImageParams, rng: np.random.Generator) -> Image.Image:
    """What the camera adds to the clean drawing (the downsampled canvas); draws from `rng`."""
    if im.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(im.blur))
    # Directional light gradient, exposure and sensor noise, all in one float pass.
    light = im.exposure * (1 + im.light_strength * (math.cos(im.light_angle) * _LX + math.sin(im.light_angle) * _LY))
    oy, ox = rng.integers(0, 64, 2)  # a random crop of a fixed noise bank: same statistics, much cheaper
    noise = _NOISE[oy:oy + HEIGHT, ox:ox + WIDTH] * np.float32(im.noise * (1 if rng.random() < 0.5 else -1))
    arr = np.asarray(img, np.float32) * light[..., None].astype(np.float32) + noise
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
