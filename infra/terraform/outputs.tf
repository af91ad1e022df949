output "query_url" {
  description = "Base URL of the query service."
  value       = google_cloud_run_v2_service.query.uri
}

output "chunker_url" {
  description = "URL the objects subscription pushes to."
  value       = google_cloud_run_v2_service.chunker.uri
}

output "bucket" {
  description = "Bucket people upload documents to (RAGRUN_BUCKET)."
  value       = google_storage_bucket.documents.name
}

output "topics" {
  description = "Pipeline topic names."
  value = {
    objects = google_pubsub_topic.objects.name
    chunks  = google_pubsub_topic.chunks.name
    vectors = google_pubsub_topic.vectors.name
  }
}

output "subscriptions" {
  description = "Consumer subscription names."
  value       = local.consumer_subscriptions
}

output "dead_letter_subscriptions" {
  description = "Where each consumer's undeliverable messages wait."
  value       = { for k, s in google_pubsub_subscription.dead_letter : k => s.name }
}

output "image_registry" {
  description = "Push ragrun-<service>:<tag> images here."
  value       = local.registry
}

output "alloydb_private_ip" {
  description = "Private IP of the AlloyDB primary instance."
  value       = google_alloydb_instance.primary.ip_address
}

output "database_url_secret" {
  description = "Secret Manager secret holding DATABASE_URL."
  value       = google_secret_manager_secret.database_url.id
}

output "service_accounts" {
  description = "Service account email per service."
  value = {
    chunker  = google_service_account.chunker.email
    embedder = google_service_account.embedder.email
    writer   = google_service_account.writer.email
    query    = google_service_account.query.email
    push     = google_service_account.push.email
  }
}
