# One identity per service, each allowed only onto the topics, subscriptions,
# bucket and secret it uses. Project-wide roles are limited to the two that have
# no narrower resource: Vertex AI (aiplatform.user) and AlloyDB (alloydb.client).

resource "google_service_account" "chunker" {
  account_id   = "ragrun-chunker"
  display_name = "ragrun chunker"
  description  = "Reads uploaded objects, publishes chunk batches."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "embedder" {
  account_id   = "ragrun-embedder"
  display_name = "ragrun embedder"
  description  = "Pulls chunk batches, calls Vertex AI embeddings, publishes vector batches."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "writer" {
  account_id   = "ragrun-writer"
  display_name = "ragrun writer"
  description  = "Pulls vector batches, loads them into AlloyDB."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "query" {
  account_id   = "ragrun-query"
  display_name = "ragrun query"
  description  = "Embeds questions and searches AlloyDB."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "push" {
  account_id   = "ragrun-push"
  display_name = "ragrun push invoker"
  description  = "Identity in the OIDC token of the objects -> chunker push subscription; may only invoke the chunker."

  depends_on = [google_project_service.apis]
}

# --- chunker -------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "chunker_reads_documents" {
  bucket = google_storage_bucket.documents.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.chunker.member
}

resource "google_pubsub_topic_iam_member" "chunker_publishes_chunks" {
  topic  = google_pubsub_topic.chunks.name
  role   = "roles/pubsub.publisher"
  member = google_service_account.chunker.member
}

# --- embedder ------------------------------------------------------------------

resource "google_pubsub_subscription_iam_member" "embedder_pulls_chunks" {
  subscription = google_pubsub_subscription.embedder.name
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.embedder.member
}

resource "google_pubsub_topic_iam_member" "embedder_publishes_vectors" {
  topic  = google_pubsub_topic.vectors.name
  role   = "roles/pubsub.publisher"
  member = google_service_account.embedder.member
}

resource "google_project_iam_member" "embedder_vertex" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = google_service_account.embedder.member
}

# --- writer --------------------------------------------------------------------

resource "google_pubsub_subscription_iam_member" "writer_pulls_vectors" {
  subscription = google_pubsub_subscription.writer.name
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.writer.member
}

resource "google_secret_manager_secret_iam_member" "writer_database_url" {
  secret_id = google_secret_manager_secret.database_url.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.writer.member
}

resource "google_project_iam_member" "writer_alloydb" {
  project = var.project_id
  role    = "roles/alloydb.client"
  member  = google_service_account.writer.member
}

# --- query ---------------------------------------------------------------------

resource "google_secret_manager_secret_iam_member" "query_database_url" {
  secret_id = google_secret_manager_secret.query_database_url.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.query.member
}

resource "google_project_iam_member" "query_alloydb" {
  project = var.project_id
  role    = "roles/alloydb.client"
  member  = google_service_account.query.member
}

resource "google_project_iam_member" "query_vertex" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = google_service_account.query.member
}

# --- push invoker --------------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "push_invokes_chunker" {
  name     = google_cloud_run_v2_service.chunker.name
  location = google_cloud_run_v2_service.chunker.location
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

# Pub/Sub signs the push OIDC tokens as the push invoker (granted by default only
# in projects created after April 2021; explicit here).
resource "google_service_account_iam_member" "pubsub_mints_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# --- query invokers ------------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "query_invokers" {
  for_each = toset(var.query_invokers)

  name     = google_cloud_run_v2_service.query.name
  location = google_cloud_run_v2_service.query.location
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_v2_service_iam_member" "query_public" {
  count = var.query_public ? 1 : 0

  name     = google_cloud_run_v2_service.query.name
  location = google_cloud_run_v2_service.query.location
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# --- telemetry -----------------------------------------------------------------

# With traces_exporter = "gcp" the services write spans to Cloud Trace and
# metrics to Cloud Monitoring; both roles exist only at project level.
resource "google_project_iam_member" "traces" {
  for_each = var.traces_exporter == "gcp" ? {
    chunker  = google_service_account.chunker.member
    embedder = google_service_account.embedder.member
    writer   = google_service_account.writer.member
    query    = google_service_account.query.member
  } : {}
  project = var.project_id
  role    = "roles/cloudtrace.agent"
  member  = each.value
}

resource "google_project_iam_member" "metrics" {
  for_each = var.traces_exporter == "gcp" ? {
    chunker  = google_service_account.chunker.member
    embedder = google_service_account.embedder.member
    writer   = google_service_account.writer.member
    query    = google_service_account.query.member
  } : {}
  project = var.project_id
  role    = "roles/monitoring.metricWriter"
  member  = each.value
}
