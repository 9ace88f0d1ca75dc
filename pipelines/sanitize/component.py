"""BulkSanitizer: the bulk job as the last step of the TFX pipeline, on the test split.

It runs the bulk job's `run_job` (job.py beside it) over the split's tf.Examples (already eye-aligned by
CelebAExampleGen, so the aligned mode with the pipeline's eye positions) with the model the Pusher
just pushed, and writes the job's output into its artifact: records/ (the split's tf.Examples with
the sanitized image in place of the original, keeping only `image_id` and `identity` of their other
features, so face matching can be evaluated on them; gender and the other attributes are dropped;
TFRecord shards that follow the split's files), manifest/, dead_letter/.
When the Pusher did not push (the model was not blessed) it runs nothing and says so.
"""


import json
import logging
import os

from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact

from components.faces.imaging import ALIGNED_LEFT_EYE, ALIGNED_RIGHT_EYE
from pipelines.sanitize.config import SanitizeJobConfig
from pipelines.sanitize.job import run_job
from trainer import features


KEPT_FEATURES = (features.IMAGE_ID_KEY, features.IDENTITY_KEY)


class SanitizedImages(Artifact):
    """A sanitized face database written by the bulk job (records/, manifest/, dead_letter/)."""

    TYPE_NAME = "SanitizedImages"


def sanitize_split(split_uri: str, pushed: bool, pushed_destination: str, output_uri: str,
                   beam_pipeline_args: list[str]) -> dict:
    """Runs the bulk job over one split of the pipeline's Examples; {} when nothing was pushed."""
    if not pushed:
        return {}
    settings = SanitizeJobConfig(
        input=os.path.join(split_uri, "*"), output=output_uri, input_format="tfrecord",
        image_field=features.IMAGE_KEY, faces="aligned", aligned_eyes=(*ALIGNED_LEFT_EYE, *ALIGNED_RIGHT_EYE),
        keep_fields=KEPT_FEATURES,
        progress_every_s=30.0, beam_pipeline_args=list(beam_pipeline_args))
    return run_job(settings, model_dir=pushed_destination)


@tfx.dsl.components.component
def BulkSanitizer(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    pushed_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.PushedModel],
    sanitized: tfx.dsl.components.OutputArtifact[SanitizedImages],
    split: tfx.dsl.components.Parameter[str] = "test",
    beam_args_json: tfx.dsl.components.Parameter[str] = "[]",
) -> None:
    """Sanitizes `split` with the pushed model; the artifact's properties hold the job's counts."""
    pushed = bool(pushed_model.get_int_custom_property("pushed"))
    destination = pushed_model.get_string_custom_property("pushed_destination")
    summary = sanitize_split(artifact_utils.get_split_uri([examples], split), pushed, destination, sanitized.uri,
                             json.loads(beam_args_json))
    if not summary:
        logging.warning("BulkSanitizer: the Pusher pushed no model (not blessed); nothing sanitized")
        sanitized.set_int_custom_property("ran", 0)
        return
    sanitized.set_int_custom_property("ran", 1)
    for name in ("inputs", "sanitized", "copied_no_face", "rejected"):
        sanitized.set_int_custom_property(name, int(summary[name]))
    sanitized.set_string_custom_property("model", destination)
    logging.info("BulkSanitizer: %s", json.dumps(summary))
