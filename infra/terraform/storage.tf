resource "google_storage_bucket" "documents" {
  #checkov:skip=CKV_GCP_62:Usage logs need a second bucket; who read or wrote what is in Cloud Audit Logs (Data Access logs for storage.googleapis.com, see docs/deploy.md)
  #checkov:skip=CKV_GCP_78:Off by default (var.bucket_versioning): on a versioned bucket deleting a live object sends OBJECT_ARCHIVE, not OBJECT_DELETE, so its chunks would stay searchable
  name                        = var.bucket_name
  location                    = coalesce(var.bucket_location, var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.bucket_force_destroy

  versioning {
    enabled = var.bucket_versioning
  }

  depends_on = [google_project_service.apis]
}

# Every new object generation and every deletion becomes a message on the objects
# topic (the default route: it can be replayed by seeking the chunker's subscription).
resource "google_storage_notification" "objects" {
  count = var.event_route == "pubsub" ? 1 : 0

  bucket         = google_storage_bucket.documents.name
  payload_format = "JSON_API_V1"
  topic          = google_pubsub_topic.objects.id
  event_types    = ["OBJECT_FINALIZE", "OBJECT_DELETE"]

  depends_on = [google_pubsub_topic_iam_member.gcs_publishes_objects]
}

resource "google_pubsub_topic_iam_member" "gcs_publishes_objects" {
  topic  = google_pubsub_topic.objects.name
  role   = "roles/pubsub.publisher"
  member = local.gcs_agent
}

resource "google_storage_bucket_iam_member" "uploaders" {
  for_each = toset(var.bucket_uploaders)

  bucket = google_storage_bucket.documents.name
  role   = "roles/storage.objectCreator"
  member = each.value
}
