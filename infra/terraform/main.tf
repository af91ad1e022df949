# ragrun on Google Cloud.
#
#   people -> GCS bucket --notification--> objects topic --push (OIDC)--> chunker (Cloud Run)
#   chunker --> chunks topic --pull--> embedder (Vertex AI) --> vectors topic --pull--> writer
#   writer --> AlloyDB (pgvector) <-- query (Cloud Run, REST)
#
# Every consumer subscription dead-letters into its own topic, and every dead-letter
# topic has a pull subscription so nothing dead-lettered is dropped. Subscriptions keep
# acked messages for var.message_retention, so a stage can be replayed with seek.

data "google_project" "this" {
  project_id = var.project_id
}

# Created on first use; it publishes the bucket's notifications.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

locals {
  apis = concat([
    "aiplatform.googleapis.com",
    "alloydb.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudtrace.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "storage.googleapis.com",
  ], var.event_route == "eventarc" ? ["eventarc.googleapis.com"] : [])

  # Pub/Sub's service agent forwards messages to dead-letter topics and mints the
  # OIDC tokens of push deliveries.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  gcs_agent    = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"

  # Topic and subscription names are the defaults of ragrun_common.settings, so a
  # service that is started without the RAGRUN_* variables still finds them.
  names = {
    objects_topic         = "ragrun-objects"
    chunks_topic          = "ragrun-chunks"
    vectors_topic         = "ragrun-vectors"
    chunker_subscription  = "ragrun-chunker"
    embedder_subscription = "ragrun-embedder"
    writer_subscription   = "ragrun-writer"
  }

  vertex_location = coalesce(var.vertex_location, var.region)

  registry = coalesce(
    var.image_registry,
    "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.ragrun.repository_id}",
  )
  images = {
    for svc in ["chunker", "embedder", "writer", "query"] :
    svc => "${local.registry}/ragrun-${svc}:${lookup(var.image_tags, svc, var.image_tag)}"
  }

  # The environment every ragrun container gets; names are the fields of
  # ragrun_common.settings.CommonSettings, values the resources this module creates.
  # DATABASE_URL comes from Secret Manager, only to the services that use it.
  # PORT is set by Cloud Run itself. The chunker subscription is named, not
  # referenced: it pushes to the chunker's URL, so a reference would be a cycle.
  common_env = {
    GOOGLE_CLOUD_PROJECT         = var.project_id
    GOOGLE_CLOUD_LOCATION        = local.vertex_location
    RAGRUN_BUCKET                = google_storage_bucket.documents.name
    RAGRUN_EMBEDDINGS            = var.embeddings
    RAGRUN_EMBEDDING_DIM         = tostring(var.embedding_dim)
    RAGRUN_OBJECTS_TOPIC         = google_pubsub_topic.objects.name
    RAGRUN_CHUNKS_TOPIC          = google_pubsub_topic.chunks.name
    RAGRUN_VECTORS_TOPIC         = google_pubsub_topic.vectors.name
    RAGRUN_CHUNKER_SUBSCRIPTION  = local.names.chunker_subscription
    RAGRUN_EMBEDDER_SUBSCRIPTION = google_pubsub_subscription.embedder.name
    RAGRUN_WRITER_SUBSCRIPTION   = google_pubsub_subscription.writer.name
    RAGRUN_LOG_LEVEL             = var.log_level
  }
  # Every service exports traces and metrics.
  traced_env = {
    RAGRUN_TRACES_EXPORTER = var.traces_exporter
  }
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset(local.apis) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_artifact_registry_repository" "ragrun" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption at rest; the images hold only open-source code, no data
  repository_id = "ragrun"
  location      = var.region
  format        = "DOCKER"
  description   = "ragrun service images (ragrun-chunker, ragrun-embedder, ragrun-writer, ragrun-query)."

  depends_on = [google_project_service.apis]
}
