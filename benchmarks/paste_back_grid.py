"""Before/after grid of REAL group photos through the bulk job (`--faces wild`): docs/bulk_grid.jpg.

    bash infra/with-env.sh python benchmarks/paste_back_grid.py --model SAVED_MODEL [--out docs/bulk_grid.jpg]

Photos: a real group photo of six people (insightface 0.7.3 sdist, `t1.jpg`, MIT licence) and a
composite of three real portraits (the face-recognition 1.3.0 sdist's test photos side by side).
Each is sanitized by `pipelines.sanitize.job.run_job`, the bulk job itself, twice: with the job's
defaults (`--paste edit --mask face --color skin`) and with the most conservative settings
(`--paste face --mask crop --color gray`: the model's own face, the whole aligned square, no
colour). The grid shows each photo before and after both, then every face found, zoomed.

The model is whatever --model names (a SavedModel with the `sanitize_faces` signature: the Pusher's
output, or a SanTrainer's Format-Serving folder). A model trained on the SYNTHETIC data cannot be
judged on real faces: its grid shows the paste-back (mask, resolution, colour, lighting), not
privacy on real faces; the caption says which model it was.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.faces.centerface import CenterFaceFinder  # noqa: E402
from components.faces.model_files import real_group_photo, real_test_photos  # noqa: E402
from pipelines.config import SanitizeJobConfig  # noqa: E402
from pipelines.sanitize.job import run_job  # noqa: E402

SETTINGS = {
    "defaults (--paste edit --mask face --color skin)": dict(paste="edit", mask="face", color="skin"),
    "conservative (--paste face --mask crop --color gray)": dict(paste="face", mask="crop", color="gray"),
}
PHOTO_WIDTH, CROP = 560, 150


def _inputs(folder: Path) -> dict[str, str]:
    """File name -> caption; the photos written into `folder`."""
    shutil.copy(real_group_photo(), folder / "group.jpg")
    portraits = [Image.open(real_test_photos()[name]).convert("RGB") for name in ("obama.jpg", "biden.jpg", "obama2.jpg")]
    height = 400
    portraits = [p.resize((round(p.width * height / p.height), height), Image.Resampling.LANCZOS) for p in portraits]
    composite = Image.new("RGB", (sum(p.width for p in portraits), height), (128, 128, 128))
    x = 0
    for portrait in portraits:
        composite.paste(portrait, (x, 0))
        x += portrait.width
    composite.save(folder / "composite.jpg", quality=95)
    return {"group.jpg": "real group photo (insightface t1.jpg)",
            "composite.jpg": "composite of three real portraits (face-recognition test photos)"}


def _label(image: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (image.width, image.height + 16), (255, 255, 255))
    out.paste(image, (0, 16))
    ImageDraw.Draw(out).text((3, 2), text, fill=(0, 0, 0))
    return out


def _row(images: list[Image.Image], gap: int = 6) -> Image.Image:
    out = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1), max(i.height for i in images)),
                    (255, 255, 255))
    x = 0
    for image in images:
        out.paste(image, (x, 0))
        x += image.width + gap
    return out


def _column(images: list[Image.Image], gap: int = 8) -> Image.Image:
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images) + gap * (len(images) - 1)),
                    (255, 255, 255))
    y = 0
    for image in images:
        out.paste(image, (0, y))
        y += image.height + gap
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="SavedModel folder with the sanitize_faces signature")
    parser.add_argument("--model-note", default="",
                        help="what the model is, for the caption (e.g. 'trained on SYNTHETIC faces')")
    parser.add_argument("--out", default="docs/bulk_grid.jpg")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        captions = _inputs(folder)
        outputs = {}
        for name, overrides in SETTINGS.items():
            out = Path(tmp) / name.split()[0]
            summary = run_job(SanitizeJobConfig(input=str(folder), output=str(out), faces="wild", progress_every_s=0,
                                                beam_pipeline_args=["--direct_running_mode=in_memory"], **overrides),
                              model_dir=args.model)
            print(f"{name}: {summary['sanitized']} photos sanitized, {summary['rejected']} rejected")
            outputs[name] = out / "images"
        finder = CenterFaceFinder()
        blocks = []
        for file, caption in captions.items():
            before = Image.open(folder / file).convert("RGB")
            afters = [Image.open(outputs[name] / file).convert("RGB") for name in SETTINGS]
            scale = PHOTO_WIDTH / before.width
            small = lambda image: image.resize((PHOTO_WIDTH, round(image.height * scale)), Image.Resampling.LANCZOS)  # noqa: E731
            blocks.append(_row([_label(small(before), f"before: {caption}")]
                               + [_label(small(a), f"after, {name}") for a, name in zip(afters, SETTINGS)]))
            crops = []
            for face in finder.find(np.asarray(before)):
                x0, y0, x1, y1 = face.box
                pad = int(0.35 * (x1 - x0))
                box = (x0 - pad, y0 - pad, x1 + pad, y1 + pad)
                crops.append(_column([image.crop(box).resize((CROP, round(CROP * (box[3] - box[1]) / (box[2] - box[0]))),
                                                             Image.Resampling.LANCZOS)
                                      for image in [before, *afters]], gap=2))
            if crops:
                blocks.append(_label(_row(crops), "each face: before / after with the defaults / after, conservative"))
        note = f"model: {args.model}" + (f" ({args.model_note})" if args.model_note else "")
        grid = _label(_column(blocks, gap=14), note)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        grid.save(args.out, quality=88)
        print(f"wrote {args.out} ({grid.width}x{grid.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
