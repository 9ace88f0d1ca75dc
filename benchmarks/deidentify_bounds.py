"""What de-identification can reach on the SYNTHETIC data, whatever the sanitizer.

    python benchmarks/deidentify_bounds.py [--pairs 300] [--work-dir outputs]

1. Image similarity of a perfect identity swap: the synthetic generator draws a person and one photo
   of them (pose, light, expression, glasses, background, noise), then the SAME photo drawn with
   another person of the same gender and age, and another photo of the first person; each aligned
   and made gray as the pipeline does. Prints the mean SSIM (95% bootstrap interval over pairs) of
   the photo against the swapped photo, and against the other photo of the same person. A
   sanitizer whose output shows somebody else cannot be expected above the first figure.
2. With `--work-dir` (a finished pipeline run): matching floors set by the preserved attributes.
   Every test face is replaced by its group's prototype as the product fits it
   (`fit_identity_replacement`: the mean train face of its combination of the preserved
   attributes, true labels: Smiling, Eyeglasses, Male, Young for `deidentify`): an output
   that keeps those attributes and nothing of the person. Prints, for each of the run's matcher
   judges and for an adaptive matcher trained on the originals and these outputs of the train split
   (as the evaluator's), the TMR at FMR 1e-2 of the outputs against the original gallery and
   against each other (linkability), and the SSIM. A de-identification target below these TMRs
   asks for less than the attributes the policy keeps.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from components.faces.imaging import align_face, celeba_landmark_to_point  # noqa: E402
from components.synthetic import drawing, people  # noqa: E402
from trainer.preprocessing import to_model_input  # noqa: E402


def aligned_gray(ident, photo, image_size: int) -> np.ndarray:
    """One synthetic photo as the pipeline sees it: JPEG at the photo's quality, aligned on its
    (integer, CelebA-style) eye landmarks, gray in [0, 1]."""
    image, landmarks = drawing.render(ident, photo)
    encoded = io.BytesIO()
    image.save(encoded, "JPEG", quality=photo.jpeg_quality)
    pixels = np.asarray(Image.open(encoded).convert("RGB"))
    left, right = (celeba_landmark_to_point(*np.rint(point).astype(int)) for point in landmarks[:2])
    face = align_face(pixels, left, right, image_size).astype(np.float32) / 255.0
    return to_model_input(face[None])[0].numpy()


def mean_interval(values: np.ndarray, samples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    draws = values[rng.integers(0, len(values), (samples, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def swap_similarity(pairs: int, image_size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    photo, swapped, again = [], [], []
    for _ in range(pairs):
        male = bool(rng.random() < 0.5)
        person = people.sample_identity(rng, male)
        other = people.sample_identity(rng, male)
        while other.young != person.young:
            other = people.sample_identity(rng, male)
        shot = people.sample_image(rng, person)
        photo.append(aligned_gray(person, shot, image_size))
        swapped.append(aligned_gray(other, shot, image_size))
        again.append(aligned_gray(person, people.sample_image(rng, person), image_size))
    photo, swapped, again = (tf.constant(np.stack(values)) for values in (photo, swapped, again))
    print(f"SYNTHETIC generator, {pairs} people, {image_size}x{image_size} gray aligned faces:")
    for label, other in (("the same photo drawn with another person of the same gender and age", swapped),
                         ("another photo of the same person", again)):
        mean, low, high = mean_interval(tf.image.ssim(photo, other, max_val=1.0).numpy())
        print(f"  SSIM of a photo against {label}: {mean:.3f} [{low:.3f}-{high:.3f}]")


def attribute_only_floors(work_dir: str, seed: int) -> None:
    from ml_metadata import metadata_store
    from tfx import v1 as tfx

    from components.evaluation.cnn_matcher import CNN_MATCHER, KerasMatcherJudge, train_matcher_cnn
    from components.evaluation.judges import load_synthetic_judges
    from components.evaluation.metrics import genuine_impostor, linkability, tmr_at_fmr
    from pipelines.san_effect import latest_uri
    from trainer.config import TrainingConfig
    from trainer.data import aligned_face_batches
    from trainer.export import load_metadata
    from trainer.identity_replacement import fit_identity_replacement, group_index
    from trainer.policy import PrivacyPolicy

    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(work_dir, "metadata.sqlite")))
    config = TrainingConfig.from_custom_config(load_metadata(os.path.join(
        latest_uri(store, "Model", "SanTrainer"), "Format-Serving"))["training_config"])
    policy = config.policy if config.policy.suppresses_identity else PrivacyPolicy.from_arguments("deidentify")
    kept = tuple(name for name in policy.preserve if name != "identity")
    others = tuple(name for name in kept if name != "Male")
    examples = latest_uri(store, "Examples", "CelebAExampleGen")

    def split(name):
        batches = list(aligned_face_batches([os.path.join(examples, f"Split-{name}", "*")], config.image_size, 256,
                                            others))
        data = {key: np.concatenate([batch[key].numpy() for batch in batches]) for key in batches[0]}
        data["group"] = group_index(np.stack([data["male" if a == "Male" else a] for a in kept], axis=1)
                                    if kept else np.zeros((len(data["face"]), 0)))
        return data

    train, test = split("train"), split("test")
    # The group means are the product's own prototypes (identity_replacement.py: a group with faces
    # of fewer than k people gets the overall mean face), fitted on the train split as in training.
    labels = (np.stack([train["male" if a == "Male" else a] for a in kept], axis=1) if kept
              else np.zeros((len(train["face"]), 0)))
    statistics = fit_identity_replacement(train["face"], train["identity"], labels, config.replacement_components,
                                          config.replacement_k, config.replacement_donors, seed)
    means = statistics.prototypes.reshape(-1, *train["face"].shape[1:])
    for line in statistics.fallbacks:
        print(f"  {line}")
    outputs = {"train": means[train["group"]], "test": means[test["group"]]}
    judges = load_synthetic_judges(latest_uri(store, "Model", "JudgeTrainer"))
    start = next((judge.model for judge in judges.matcher if judge.name == CNN_MATCHER), None)
    adaptive = train_matcher_cnn(np.concatenate([train["face"], outputs["train"]]),
                                 np.concatenate([train["identity"], train["identity"]]), config.image_size,
                                 epochs=8, seed=seed, progress=lambda message: None, start=start)
    matchers = [*judges.matcher, KerasMatcherJudge("adaptive_resnet_matcher_cnn (ADAPTIVE)", "", adaptive)]
    ssim = float(tf.reduce_mean(tf.image.ssim(tf.constant(test["face"]), tf.constant(outputs["test"]), 1.0)))
    print(f"{work_dir}: SYNTHETIC test split, {len(test['face'])} faces; each replaced by the mean train face of its "
          f"group of {', '.join(kept)} (true labels; {2 ** len(kept)} groups): SSIM {ssim:.3f}")
    for judge in matchers:
        probes, gallery = judge.embed(outputs["test"]), judge.embed(test["face"])
        genuine, impostor = genuine_impostor(judge.similarity(probes, gallery), test["identity"])
        linked = linkability(judge.similarity(probes, probes), test["identity"], 1e-2)
        originals = judge.similarity(gallery, gallery)
        print(f"  {judge.name}: TMR at FMR 1e-2 on the originals {linkability(originals, test['identity'], 1e-2):.1%}; "
              f"outputs against the original gallery {tmr_at_fmr(genuine, impostor, 1e-2):.1%}, "
              f"linkability {linked:.1%}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=300, help="synthetic people drawn for the swap figures")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work-dir", help="a finished pipeline run: also the attribute-only matching floors")
    args = parser.parse_args(argv)
    if args.pairs < 2:
        raise SystemExit("--pairs: at least 2")
    swap_similarity(args.pairs, args.image_size, args.seed)
    if args.work_dir:
        attribute_only_floors(args.work_dir, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
