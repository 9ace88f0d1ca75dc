"""ValidationGate: stops the pipeline when ExampleValidator found anomalies, or when the data
cannot support the privacy policy.

ExampleValidator only records anomalies; a data engineer wants the run to stop there, with a
message that says which split and feature broke which rule of schemas/schema.pbtxt. And a policy
that suppresses or preserves an attribute needs faces of both values of it in the training split
to learn from and to judge on: checked here from StatisticsGen's figures, before any training.
"""


import json
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

from trainer.features import attribute_feature_name

ANOMALIES_FILE = "SchemaDiff.pb"
STATISTICS_FILE = "FeatureStats.pb"
# A policy attribute needs at least this many training faces of each value (and this share of them).
MIN_FACES_PER_VALUE = 5
MIN_SHARE_PER_VALUE = 0.02


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


def attribute_shares(statistics_uri: str, split: str, attributes: list[str]) -> dict:
    """{CelebA attribute: (faces with a value, share of them with value 1)} from StatisticsGen's
    figures for `split` (0/1 features: the mean is the share of ones)."""
    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    statistics.ParseFromString(io_utils.read_bytes_file(os.path.join(statistics_uri, f"Split-{split}", STATISTICS_FILE)))
    features = {".".join(feature.path.step) or feature.name: feature for feature in statistics.datasets[0].features}
    shares = {}
    for attribute in attributes:
        feature = features.get(attribute_feature_name(attribute))
        if feature is None:
            raise DataValidationError(f"privacy policy attribute {attribute!r}: the examples have no feature "
                                      f"{attribute_feature_name(attribute)!r} (split {split!r})")
        shares[attribute] = (int(feature.num_stats.common_stats.num_non_missing), float(feature.num_stats.mean))
    return shares


def check_policy_support(statistics_uri: str, attributes: list[str], split: str = "train") -> None:
    """Every policy attribute has at least MIN_FACES_PER_VALUE faces (and MIN_SHARE_PER_VALUE) of
    each value in `split`; otherwise one error listing each attribute the data cannot support."""
    problems = []
    for attribute, (count, share) in attribute_shares(statistics_uri, split, attributes).items():
        fewest = min(share, 1.0 - share)
        if count == 0 or fewest * count < MIN_FACES_PER_VALUE or fewest < MIN_SHARE_PER_VALUE:
            problems.append(f"{attribute}: {share:.1%} of {count} {split} faces have it; a policy needs at least "
                            f"{MIN_FACES_PER_VALUE} faces and {MIN_SHARE_PER_VALUE:.0%} with and without it")
    if problems:
        raise DataValidationError(
            "the data cannot support the privacy policy (nothing was trained):\n  " + "\n  ".join(problems)
            + "\nRemove the attribute from --suppress / --preserve, or bring data where both values are common.")


@tfx.dsl.components.component
def ValidationGate(anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
                   statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
                   policy_attributes_json: tfx.dsl.components.Parameter[str] = "[]") -> None:
    """Raises DataValidationError if any split has an anomaly, or if the training split has too few
    faces with or without an attribute of the privacy policy (`policy_attributes_json`: CelebA names)."""
    check_anomalies(anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names))
    check_policy_support(statistics.uri, json.loads(policy_attributes_json))
