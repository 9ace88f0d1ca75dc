# Cloud resources of the facesan pipeline: the APIs it calls, one bucket for data and artifacts,
# one Docker repository for the pipeline image, and one service account that every step runs as.
# IAM is in iam.tf.

locals {
  services = [
    "aiplatform.googleapis.com",       # Vertex AI Pipelines, Training, schedules
    "dataflow.googleapis.com",         # Beam components and the bulk sanitization job
    "artifactregistry.googleapis.com", # the pipeline image
    "storage.googleapis.com",
    "compute.googleapis.com", # Dataflow worker VMs
    "iam.googleapis.com",
  ]
}

resource "google_project_service" "required" {
  for_each           = toset(local.services)
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_storage_bucket" "facesan" {
  name     = var.bucket_name
  project  = var.project_id
  location = var.region

  uniform_bucket_level_access = true     # IAM only, no per-object ACLs
  public_access_prevention    = "enforced" # biometric data: never public

  versioning {
    enabled = true
  }

  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }

  lifecycle_rule {
    condition {
      matches_prefix = ["dataflow-tmp/", "facesan/dataflow-tmp/"]
      age            = var.temp_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.required]
}

# Who read or wrote which face images: access logs of the data bucket, kept in their own bucket.
resource "google_storage_bucket" "access_logs" {
  #checkov:skip=CKV_GCP_62:this is the access-log sink itself; logging it would recurse
  name                        = "${var.bucket_name}-access-logs"
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = var.access_log_retention_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:holds the code image only (no face data); set a CMEK here if your policy requires one for all repositories
  project       = var.project_id
  location      = var.region
  repository_id = "facesan"
  format        = "DOCKER"
  description   = "facesan pipeline image (infra/Dockerfile): Vertex components, training jobs, Dataflow workers and flex template launcher"
  depends_on    = [google_project_service.required]
}

resource "google_service_account" "pipeline" {
  project      = var.project_id
  account_id   = "facesan-pipeline"
  display_name = "facesan pipeline runner"
  description  = "Runs the facesan Vertex AI pipeline, its training jobs and its Dataflow workers"
  depends_on   = [google_project_service.required]
}
