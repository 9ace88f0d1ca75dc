"""The synthetic data's drawing processes (celeba_layout.generate): each draws and saves a range of
images. Apart from celeba_layout (and so from Beam, which its CelebA layout imports), so that a
spawned process starts in a fraction of a second."""

from __future__ import annotations

import os

from components.synthetic import drawing, people

_STATE: dict = {}


def set_state(state: dict) -> None:
    """What every task needs: seed, stream (the images' generator stream), img_dir, identities
    ({id: (Identity, random attributes)}) and image_identity (the identity of image i at i - 1)."""
    _STATE.update(state)


def draw_images(indices: range) -> list[tuple[dict, list[int]]]:
    """Draws and saves the images `indices` (1-based) as NNNNNN.jpg; returns each one's attributes
    ({CelebA name: bool}, the drawn and the random ones) and landmark coordinates."""
    seed, stream, img_dir = _STATE["seed"], _STATE["stream"], _STATE["img_dir"]
    rows = []
    for index in indices:
        ident, rand = _STATE["identities"][int(_STATE["image_identity"][index - 1])]
        params = people.sample_image(people.stream_rng(seed, stream, index), ident)
        img, landmarks = drawing.render(ident, params)
        img.save(os.path.join(img_dir, f"{index:06d}.jpg"), "JPEG", quality=params.jpeg_quality)
        rows.append(({**people.drawn_attributes(ident, params), **rand}, [int(round(v)) for v in landmarks.ravel()]))
    return rows
