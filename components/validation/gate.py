"""ValidationGate: stops the pipeline when ExampleValidator found anomalies.

ExampleValidator only records anomalies; a data engineer wants the run to stop there, with a
message that says which split and feature broke which rule of schemas/schema.pbtxt.
"""


import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

ANOMALIES_FILE = "SchemaDiff.pb"


class DataValidationError(RuntimeError):
    pass


def describe_anomalies(anomalies_uri: str, split_names: list[str]) -> list[str]:
    """One readable line per anomalous feature, across splits."""
    problems = []
    for split in split_names:
        path = os.path.join(anomalies_uri, f"Split-{split}", ANOMALIES_FILE)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(io_utils.read_bytes_file(path))
        for feature, info in sorted(anomalies.anomaly_info.items()):
            problems.append(f"split {split!r}, feature {feature!r}: {info.short_description} — {info.description}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            problems.append(f"split {split!r}, whole dataset: {info.short_description} — {info.description}")
    return problems


def check_anomalies(anomalies_uri: str, split_names: list[str]) -> None:
    problems = describe_anomalies(anomalies_uri, split_names)
    if problems:
        raise DataValidationError(
            "ExampleValidator found anomalies against schemas/schema.pbtxt:\n  "
            + "\n  ".join(problems)
            + "\nFix the input data (see the CelebAExampleGen ingestion report for rejected rows), or, "
            "if the data is right and the schema is too strict, update schemas/schema.pbtxt."
        )


@tfx.dsl.components.component
def ValidationGate(anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies]) -> None:
    """Raises DataValidationError if any split has an anomaly."""
    check_anomalies(anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names))
