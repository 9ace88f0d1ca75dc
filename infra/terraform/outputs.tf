output "bucket" {
  description = "Pass as --bucket to `python -m pipelines.run --runner vertex`; copy CelebA under it."
  value       = "gs://${google_storage_bucket.facesan.name}"
}

output "service_account" {
  description = "Pass as --service-account (Vertex) and --service_account_email (Dataflow)."
  value       = google_service_account.pipeline.email
}

output "image_repository" {
  description = "Tag the pipeline image as <this>/pipeline:TAG and pass it as --image."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}
