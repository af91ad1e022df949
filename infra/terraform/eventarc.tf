# The alternative event route (var.event_route = "eventarc"): Eventarc delivers the
# bucket's object events to the chunker directly, as CloudEvents of type
# google.cloud.storage.object.v1.finalized / .deleted. It cannot be replayed by a
# seek; `ragrun reindex` (which publishes to the objects topic, still pushed to the
# chunker) covers reprocessing on this route.

locals {
  eventarc_events = var.event_route == "eventarc" ? {
    finalized = "google.cloud.storage.object.v1.finalized"
    deleted   = "google.cloud.storage.object.v1.deleted"
  } : {}
}

resource "google_service_account" "eventarc" {
  count        = var.event_route == "eventarc" ? 1 : 0
  account_id   = "ragrun-eventarc"
  display_name = "ragrun Eventarc trigger (delivers object events to the chunker)"
}

resource "google_eventarc_trigger" "objects" {
  for_each = local.eventarc_events

  name     = "ragrun-objects-${each.key}"
  location = coalesce(var.bucket_location, var.region)

  matching_criteria {
    attribute = "type"
    value     = each.value
  }
  matching_criteria {
    attribute = "bucket"
    value     = google_storage_bucket.documents.name
  }

  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.chunker.name
      region  = var.region
    }
  }

  service_account = google_service_account.eventarc[0].email

  depends_on = [
    google_project_iam_member.eventarc_receives,
    google_project_iam_member.gcs_publishes_for_eventarc,
    google_cloud_run_v2_service_iam_member.eventarc_invokes_chunker,
  ]
}

# Eventarc's documented requirements for Cloud Storage triggers; both roles exist
# only at project level.
resource "google_project_iam_member" "eventarc_receives" {
  count   = var.event_route == "eventarc" ? 1 : 0
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.eventarc[0].member
}

resource "google_project_iam_member" "gcs_publishes_for_eventarc" {
  count   = var.event_route == "eventarc" ? 1 : 0
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = local.gcs_agent
}

resource "google_cloud_run_v2_service_iam_member" "eventarc_invokes_chunker" {
  count    = var.event_route == "eventarc" ? 1 : 0
  name     = google_cloud_run_v2_service.chunker.name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.eventarc[0].member
}
