"""The exported sanitizer's outputs over a split, through its `sanitize_faces` signature, as the
bulk job calls it: what the evaluator judges and what the adaptive attacker trains on."""

from __future__ import annotations

from trainer.data import aligned_face_batches
from trainer.export import signature_name

# "sanitized" is what the bulk job writes: X'_OP for the paper's SAN, the output for a hashed
# random target gender for the residual sanitizer (trainer/export.py).
OUTPUTS = ("original", "same", "neutral", "sanitized")


def sanitized_batches(model, file_patterns: list[str], image_size: int, batch_size: int, max_faces: int,
                      precision: str = "float32", attributes: tuple = ()):
    """Batches {"male", "identity", "attributes": {CelebA name: [N]}, "images": {output: [N,S,S,1]}}
    of up to max_faces faces; `precision`: which of the model's precisions computes them
    (trainer/export.py); `attributes`: the labels to carry besides gender."""
    name = signature_name("sanitize_faces", precision)
    if name not in model.signatures:
        raise ValueError(f"the sanitizer has no {precision} signature ({name}); it was exported with "
                         f"{sorted(s for s in model.signatures if s.startswith('sanitize_faces'))}")
    sanitize = model.signatures[name]
    seen = 0
    for batch in aligned_face_batches(file_patterns, image_size, batch_size, attributes):
        take = min(int(batch["male"].shape[0]), max_faces - seen)
        if take <= 0:
            return
        faces = batch["face"][:take]
        outputs = sanitize(faces=faces)
        yield {"male": batch["male"][:take].numpy(), "identity": batch["identity"][:take].numpy(),
               "attributes": {name: batch[name][:take].numpy() for name in attributes},
               "images": {"original": faces, "same": outputs["same"], "neutral": outputs["neutral"],
                          "sanitized": outputs["sanitized"]}}
        seen += take
