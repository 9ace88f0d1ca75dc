# Least privilege for the pipeline service account: project-wide only the roles that have no
# narrower scope (launching Vertex AI and Dataflow jobs, being a Dataflow worker, writing logs);
# storage and the image repository are granted on that one bucket and that one repository.
# No basic roles (owner/editor/viewer), no storage.admin, no project-wide storage access.

locals {
  pipeline_member = "serviceAccount:${google_service_account.pipeline.email}"

  pipeline_project_roles = [
    "roles/aiplatform.user",     # run pipeline jobs, custom training jobs, schedules
    "roles/dataflow.developer",  # launch Dataflow jobs from Beam components and the flex template
    "roles/dataflow.worker",     # Dataflow worker VMs run as this account
    "roles/logging.logWriter",   # component, trainer and worker logs
    "roles/monitoring.metricWriter",
  ]
}

resource "google_project_iam_member" "pipeline" {
  #checkov:skip=CKV_GCP_49:dataflow.developer (create jobs) exists only at project level; the account can only act as itself (pipeline_acts_as_itself)
  for_each = toset(local.pipeline_project_roles)
  project  = var.project_id
  role     = each.value
  member   = local.pipeline_member
}

# Read CelebA, write artifacts, models, reports and sanitized images: this bucket only.
resource "google_storage_bucket_iam_member" "pipeline_objects" {
  bucket = google_storage_bucket.facesan.name
  role   = "roles/storage.objectAdmin"
  member = local.pipeline_member
}

# Dataflow checks the temp/staging bucket's metadata (storage.buckets.get) before a job starts.
resource "google_storage_bucket_iam_member" "pipeline_bucket_metadata" {
  bucket = google_storage_bucket.facesan.name
  role   = "roles/storage.legacyBucketReader"
  member = local.pipeline_member
}

# Pull the pipeline image: this repository only.
resource "google_artifact_registry_repository_iam_member" "pipeline_pull" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = local.pipeline_member
}

# The pipeline launches training jobs and Dataflow jobs that run as this same account.
resource "google_service_account_iam_member" "pipeline_acts_as_itself" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.pipeline_member
}

# People (or a CI identity) who submit runs and schedules as the pipeline account.
resource "google_service_account_iam_member" "operators_act_as_pipeline" {
  for_each           = toset(var.operators)
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}
