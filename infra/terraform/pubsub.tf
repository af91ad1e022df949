# --- Topics --------------------------------------------------------------------
# Topic retention lets a subscription seek back even to messages published before it existed.

resource "google_pubsub_topic" "objects" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest. CMEK needs a Cloud KMS key the Pub/Sub service agent may use; not part of the default deployment
  name                       = local.names.objects_topic
  message_retention_duration = var.message_retention

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "chunks" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest. CMEK needs a Cloud KMS key the Pub/Sub service agent may use; not part of the default deployment
  name                       = local.names.chunks_topic
  message_retention_duration = var.message_retention

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "vectors" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest. CMEK needs a Cloud KMS key the Pub/Sub service agent may use; not part of the default deployment
  name                       = local.names.vectors_topic
  message_retention_duration = var.message_retention

  depends_on = [google_project_service.apis]
}

# --- Dead letters --------------------------------------------------------------
# One dead-letter topic per consumer, each with a pull subscription: Pub/Sub drops
# messages published to a topic that has no subscription.

locals {
  consumers = toset(["chunker", "embedder", "writer"])

  consumer_subscriptions = {
    chunker  = google_pubsub_subscription.chunker.name
    embedder = google_pubsub_subscription.embedder.name
    writer   = google_pubsub_subscription.writer.name
  }
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = local.consumers
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest. CMEK needs a Cloud KMS key the Pub/Sub service agent may use; not part of the default deployment

  name                       = "ragrun-${each.key}-dead-letter"
  message_retention_duration = var.message_retention

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.consumers

  name                       = "ragrun-${each.key}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  retain_acked_messages      = true
  message_retention_duration = var.message_retention

  expiration_policy {
    ttl = "" # never expire, however long nothing reads it
  }
}

# Pub/Sub's service agent moves messages: it must publish to the dead-letter topic
# and acknowledge them on the subscription they came from.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.consumers

  topic  = google_pubsub_topic.dead_letter[each.key].name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.consumer_subscriptions

  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# --- Consumer subscriptions ----------------------------------------------------

# objects -> chunker: pushed to the chunker's URL with an OIDC token of the push
# invoker. functions-framework turns the push body into a messagePublished CloudEvent.
resource "google_pubsub_subscription" "chunker" {
  name                       = local.names.chunker_subscription
  topic                      = google_pubsub_topic.objects.id
  ack_deadline_seconds       = var.ack_deadline_seconds.chunker
  retain_acked_messages      = true
  message_retention_duration = var.message_retention

  push_config {
    push_endpoint = google_cloud_run_v2_service.chunker.uri

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloud_run_v2_service.chunker.uri
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter["chunker"].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invokes_chunker,
    google_service_account_iam_member.pubsub_mints_push_tokens,
  ]
}

# chunks -> embedder (streaming pull).
resource "google_pubsub_subscription" "embedder" {
  name                       = local.names.embedder_subscription
  topic                      = google_pubsub_topic.chunks.id
  ack_deadline_seconds       = var.ack_deadline_seconds.embedder
  retain_acked_messages      = true
  message_retention_duration = var.message_retention

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter["embedder"].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  expiration_policy {
    ttl = ""
  }
}

# vectors -> writer (streaming pull).
resource "google_pubsub_subscription" "writer" {
  name                       = local.names.writer_subscription
  topic                      = google_pubsub_topic.vectors.id
  ack_deadline_seconds       = var.ack_deadline_seconds.writer
  retain_acked_messages      = true
  message_retention_duration = var.message_retention

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter["writer"].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  expiration_policy {
    ttl = ""
  }
}
