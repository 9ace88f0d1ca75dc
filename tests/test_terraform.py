"""The cloud resources in infra/terraform: valid to a real IaC checker and least-privilege by
construction. (Terraform itself is not on the package registries these machines reach, so
`terraform validate` cannot run here; checkov parses and checks the same HCL.)"""

import glob
import json
import os
import re
import shutil
import subprocess

import hcl2
import pytest

from pipelines.config import REPO_ROOT

TERRAFORM_DIR = os.path.join(REPO_ROOT, "infra", "terraform")
CHECKOV = "checkov==3.3.30"


@pytest.fixture(scope="module")
def terraform():
    """{block type: {resource type or name: {name: body}}} over every .tf file."""
    merged = {"resource": {}, "variable": {}, "output": {}, "locals": {}}
    for path in sorted(glob.glob(os.path.join(TERRAFORM_DIR, "*.tf"))):
        with open(path) as handle:
            parsed = hcl2.load(handle)
        for block in parsed.get("resource", []):
            for resource_type, instances in block.items():
                merged["resource"].setdefault(resource_type, {}).update(instances)
        for kind in ("variable", "output"):
            for block in parsed.get(kind, []):
                merged[kind].update(block)
        for block in parsed.get("locals", []):
            merged["locals"].update(block)
    return merged


def _all_roles(terraform):
    roles = []
    for resource_type, instances in terraform["resource"].items():
        for name, body in instances.items():
            role = body.get("role")
            if role == "${each.value}":
                role_list = re.fullmatch(r"\$\{toset\(local\.(\w+)\)\}", body["for_each"])[1]
                roles += [(resource_type, name, r) for r in terraform["locals"][role_list]]
            elif role:
                roles.append((resource_type, name, role))
    return roles


def test_checkov_finds_no_failed_check():
    assert shutil.which("uvx"), "uvx (from uv) runs the pinned checkov; infra/with-env.sh installs uv"
    result = subprocess.run(
        ["uvx", "--from", CHECKOV, "checkov", "-d", TERRAFORM_DIR, "--framework", "terraform",
         "--skip-download", "--compact", "--quiet", "-o", "json"],
        capture_output=True, text=True, cwd=REPO_ROOT)
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f"{check['check_id']} {check['resource']}: {check['check_name']}"
              for check in report.get("results", {}).get("failed_checks", [])]
    assert summary["parsing_errors"] == 0
    assert failed == [] and summary["failed"] == 0
    assert summary["passed"] >= 25 and summary["resource_count"] >= 10  # it really read the files


def test_no_basic_or_admin_roles_and_storage_only_on_the_bucket(terraform):
    roles = _all_roles(terraform)
    assert roles, "no IAM bindings parsed"
    for resource_type, name, role in roles:
        assert role not in ("roles/owner", "roles/editor", "roles/viewer"), (resource_type, name)
        # objectAdmin on the one bucket (checked below) is the only "admin" role granted.
        assert "admin" not in role.lower() or role == "roles/storage.objectAdmin", (resource_type, name, role)
    project_roles = {role for rtype, _, role in roles if rtype == "google_project_iam_member"}
    assert project_roles == {"roles/aiplatform.user", "roles/dataflow.developer", "roles/dataflow.worker",
                             "roles/logging.logWriter", "roles/monitoring.metricWriter"}
    storage_bindings = [(rtype, name) for rtype, name, role in roles if role.startswith("roles/storage.")]
    assert storage_bindings and all(rtype == "google_storage_bucket_iam_member" for rtype, _ in storage_bindings)
    for _, name in storage_bindings:
        body = terraform["resource"]["google_storage_bucket_iam_member"][name]
        assert body["bucket"] == "${google_storage_bucket.facesan.name}"
    registry = [(rtype, role) for rtype, _, role in roles if role.startswith("roles/artifactregistry.")]
    assert registry == [("google_artifact_registry_repository_iam_member", "roles/artifactregistry.reader")]


def test_data_bucket_is_private_logged_and_cleans_temp_files(terraform):
    bucket = terraform["resource"]["google_storage_bucket"]["facesan"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["logging"][0]["log_bucket"] == "${google_storage_bucket.access_logs.name}"
    prefixes = [rule["condition"][0].get("matches_prefix") for rule in bucket["lifecycle_rule"]]
    assert ["dataflow-tmp/", "facesan/dataflow-tmp/"] in prefixes


def test_every_variable_used_is_declared_and_outputs_feed_the_cli(terraform):
    text = "\n".join(open(path).read() for path in glob.glob(os.path.join(TERRAFORM_DIR, "*.tf")))
    used = set(re.findall(r"\bvar\.(\w+)", text))
    assert used and used <= set(terraform["variable"])
    example = open(os.path.join(TERRAFORM_DIR, "terraform.tfvars.example")).read()
    required = {name for name, body in terraform["variable"].items() if "default" not in body}
    assert required <= set(re.findall(r"^(\w+)\s*=", example, re.M))
    # The walk-through in README passes these outputs to `pipelines.run --runner vertex`.
    assert {"bucket", "service_account", "image_repository"} <= set(terraform["output"])
