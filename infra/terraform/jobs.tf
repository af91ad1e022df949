# --- reindex: re-emit the bucket (Cloud Run Job) ----------------------------------
#
#   gcloud run jobs execute ragrun-reindex --region REGION \
#     [--tasks N] [--update-env-vars RAGRUN_REINDEX_SOURCE=gs://BUCKET/PREFIX]
#
# publishes to the objects topic, for every object, the OBJECT_FINALIZE notification
# GCS sent when it was written: for data older than message_retention (which seek
# cannot reach) or a bucket that predates its notification config. Each task emits
# the objects whose name hashes to its CLOUD_RUN_TASK_INDEX, so the tasks of one
# execution emit every object once. Nothing runs until someone executes the job.
# The image is the ragrun CLI: services/query/Dockerfile, target `setup`.

variable "reindex_tasks" {
  description = "Tasks per execution of the reindex job (each lists the bucket, publishes its share)."
  type        = number
  default     = 4

  validation {
    condition     = var.reindex_tasks >= 1 && var.reindex_tasks <= 10000
    error_message = "Cloud Run Jobs run 1 to 10000 tasks."
  }
}

variable "reindex_rate" {
  description = "RAGRUN_REINDEX_RATE: notifications per second per task (0 = no limit). The chunker scales with what arrives."
  type        = number
  default     = 50
}

locals {
  reindex_image = "${local.registry}/ragrun-cli:${lookup(var.image_tags, "cli", var.image_tag)}"
}

resource "google_service_account" "reindex" {
  account_id   = "ragrun-reindex"
  display_name = "ragrun reindex job"
  description  = "Lists the document bucket and publishes object notifications to the objects topic."

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "reindex_lists_documents" {
  bucket = google_storage_bucket.documents.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.reindex.member
}

resource "google_pubsub_topic_iam_member" "reindex_publishes_objects" {
  topic  = google_pubsub_topic.objects.name
  role   = "roles/pubsub.publisher"
  member = google_service_account.reindex.member
}

resource "google_cloud_run_v2_job" "reindex" {
  name                = "ragrun-reindex"
  location            = var.region
  deletion_protection = var.deletion_protection

  template {
    task_count = var.reindex_tasks

    template {
      service_account = google_service_account.reindex.email
      timeout         = "3600s"
      # A failed task runs again from the start: re-emitting is harmless, every stage
      # is idempotent.
      max_retries = 3

      containers {
        image   = local.reindex_image
        command = ["python", "-m", "ragrun_cli.reindex"]

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }

        dynamic "env" {
          for_each = local.common_env
          content {
            name  = env.key
            value = env.value
          }
        }

        env {
          name  = "RAGRUN_REINDEX_SOURCE"
          value = "gs://${google_storage_bucket.documents.name}/"
        }

        env {
          name  = "RAGRUN_REINDEX_RATE"
          value = tostring(var.reindex_rate)
        }
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_storage_bucket_iam_member.reindex_lists_documents,
    google_pubsub_topic_iam_member.reindex_publishes_objects,
  ]
}

output "reindex_job" {
  description = "Cloud Run Job that re-emits the bucket's notifications (gcloud run jobs execute)."
  value       = google_cloud_run_v2_job.reindex.name
}
