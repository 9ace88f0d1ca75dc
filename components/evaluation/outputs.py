"""The exported sanitizer's outputs over a split, through its `sanitize_faces` signature, as the
bulk job calls it: what the evaluator judges and what the adaptive attacker trains on."""

from __future__ import annotations

from trainer.data import aligned_face_batches

# "sanitized" is what the bulk job writes: X'_OP for the paper's SAN, the output for a hashed
# random target gender for the residual sanitizer (trainer/export.py).
OUTPUTS = ("original", "same", "neutral", "sanitized")


def sanitized_batches(model, file_patterns: list[str], image_size: int, batch_size: int, max_faces: int):
    """Batches {"male", "identity", "images": {output: [N,S,S,1]}} of up to max_faces faces."""
    sanitize = model.signatures["sanitize_faces"]
    seen = 0
    for batch in aligned_face_batches(file_patterns, image_size, batch_size):
        take = min(int(batch["male"].shape[0]), max_faces - seen)
        if take <= 0:
            return
        faces = batch["face"][:take]
        outputs = sanitize(faces=faces)
        yield {"male": batch["male"][:take].numpy(), "identity": batch["identity"][:take].numpy(),
               "images": {"original": faces, "same": outputs["same"], "neutral": outputs["neutral"],
                          "sanitized": outputs["sanitized"]}}
        seen += take
