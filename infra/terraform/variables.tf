variable "project_id" {
  description = "Google Cloud project that runs the pipeline (Vertex AI Pipelines, Vertex AI Training, Dataflow)."
  type        = string
}

variable "region" {
  description = "Region of the bucket, the image repository, Vertex AI and Dataflow."
  type        = string
  default     = "us-central1"
}

variable "bucket_name" {
  description = "Globally unique name of the bucket for CelebA, the pipeline root, pushed models and Dataflow temp files."
  type        = string
}

variable "operators" {
  description = "Members allowed to launch runs as the pipeline service account (e.g. [\"user:alice@example.com\", \"group:ml-ops@example.com\"])."
  type        = list(string)
  default     = []
}

variable "temp_retention_days" {
  description = "Dataflow/Vertex temporary objects under dataflow-tmp/ are deleted after this many days."
  type        = number
  default     = 7
}

variable "noncurrent_version_retention_days" {
  description = "Overwritten or deleted objects (models, reports) stay recoverable for this many days."
  type        = number
  default     = 30
}

variable "access_log_retention_days" {
  description = "Storage access logs of the data bucket are kept this many days."
  type        = number
  default     = 365
}
