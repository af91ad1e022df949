variable "project_id" {
  description = "Google Cloud project that holds every ragrun resource."
  type        = string
}

variable "region" {
  description = "Region for Cloud Run, AlloyDB, Artifact Registry and the subnet."
  type        = string
  default     = "us-central1"
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = { app = "ragrun" }
}

variable "enable_apis" {
  description = "Enable the Google APIs ragrun needs. Turn off where a platform team manages APIs."
  type        = bool
  default     = true
}

# --- Storage -------------------------------------------------------------------

variable "bucket_name" {
  description = "Globally unique name of the bucket people drop documents into (RAGRUN_BUCKET)."
  type        = string
}

variable "bucket_location" {
  description = "Bucket location; null means the region."
  type        = string
  default     = null
}

variable "bucket_versioning" {
  description = "Keep noncurrent object versions, so an overwritten or deleted document can be restored."
  type        = bool
  default     = false
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds objects."
  type        = bool
  default     = false
}

variable "bucket_uploaders" {
  description = "IAM members (user:..., group:..., serviceAccount:...) allowed to create objects in the bucket."
  type        = list(string)
  default     = []
}

# --- Images --------------------------------------------------------------------

variable "image_registry" {
  description = "Registry path holding the ragrun-<service> images; null means this module's Artifact Registry repository."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Image tag deployed for every service unless image_tags overrides it. Pin a release tag in production."
  type        = string
  default     = "latest"
}

variable "image_tags" {
  description = "Per-service image tags, keyed by chunker, embedder, writer, query."
  type        = map(string)
  default     = {}
}

# --- Pipeline ------------------------------------------------------------------

variable "embeddings" {
  description = "RAGRUN_EMBEDDINGS for every service: local | hash | vertex:MODEL."
  type        = string
  default     = "vertex:text-embedding-005"
}

variable "embedding_dim" {
  description = "RAGRUN_EMBEDDING_DIM: vector dimension stored in pgvector (at most 2000 for an HNSW index)."
  type        = number
  default     = 768

  validation {
    condition     = var.embedding_dim >= 1 && var.embedding_dim <= 2000
    error_message = "embedding_dim must be between 1 and 2000."
  }
}

variable "vertex_location" {
  description = "GOOGLE_CLOUD_LOCATION used for Vertex AI calls; null means the region."
  type        = string
  default     = null
}

variable "event_route" {
  description = "How object events reach the chunker: \"pubsub\" (GCS notifications to the objects topic, pushed to the chunker; replayable, the default) or \"eventarc\" (Eventarc storage triggers straight to the chunker)."
  type        = string
  default     = "pubsub"
  validation {
    condition     = contains(["pubsub", "eventarc"], var.event_route)
    error_message = "event_route must be pubsub or eventarc."
  }
}

variable "alloydb_read_pool_nodes" {
  description = "Nodes of an AlloyDB read pool for the query service (0: the query service reads the primary)."
  type        = number
  default     = 0
}

variable "traces_exporter" {
  description = "RAGRUN_TRACES_EXPORTER of every service: none, console, otlp or gcp (Cloud Trace and Cloud Monitoring)."
  type        = string
  default     = "gcp"
  validation {
    condition     = contains(["none", "console", "otlp", "gcp"], var.traces_exporter)
    error_message = "traces_exporter must be none, console, otlp or gcp."
  }
}

variable "log_level" {
  description = "RAGRUN_LOG_LEVEL for every service."
  type        = string
  default     = "INFO"
}

variable "message_retention" {
  description = "How long topics and subscriptions keep messages (acked ones too), so `ragrun replay` can seek a stage back that far; RAGRUN_RETENTION locally. Pub/Sub allows 600s (10 minutes) to 2678400s (31 days); beyond 1 day retained messages are billed as storage. Snapshots last at most 7 days whatever this is."
  type        = string
  default     = "604800s"

  validation {
    condition = can(regex("^[0-9]+s$", var.message_retention)) && try(
      tonumber(trimsuffix(var.message_retention, "s")) >= 600 &&
      tonumber(trimsuffix(var.message_retention, "s")) <= 2678400,
      false
    )
    error_message = "message_retention must be whole seconds like \"604800s\", from \"600s\" (10 minutes) to \"2678400s\" (31 days)."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries before Pub/Sub moves a message to the subscription's dead-letter topic (5-100)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts max_delivery_attempts between 5 and 100."
  }
}

variable "ack_deadline_seconds" {
  description = "Ack deadline per consumer. The embedder and writer extend the leases of messages they hold, so a short deadline only sets how soon a crashed worker's messages go to another. For the chunker's push subscription it is also how long Pub/Sub waits for the HTTP response, so the chunker's request timeout follows it."
  type = object({
    chunker  = number
    embedder = number
    writer   = number
  })
  default = {
    chunker  = 600
    embedder = 30
    writer   = 30
  }
}

variable "retry_minimum_backoff" {
  description = "Shortest wait before Pub/Sub redelivers a nacked message."
  type        = string
  default     = "10s"
}

variable "retry_maximum_backoff" {
  description = "Longest wait before Pub/Sub redelivers a nacked message."
  type        = string
  default     = "600s"
}

# --- Cloud Run -----------------------------------------------------------------

variable "worker_runtime" {
  description = <<-EOT
    How the embedder and writer (Pub/Sub streaming-pull workers) run:
    "worker_pool" = Cloud Run worker pools: no port, no ingress, a fixed number of
    always-on instances. The default, because the workers serve no HTTP port.
    "service" = Cloud Run services with CPU always allocated and min instances >= 1.
    A service's revision only becomes ready once its container answers on $PORT,
    so choose it only for worker images that serve a health port.
  EOT
  type        = string
  default     = "worker_pool"

  validation {
    condition     = contains(["service", "worker_pool"], var.worker_runtime)
    error_message = "worker_runtime must be \"service\" or \"worker_pool\"."
  }
}

variable "worker_pool_launch_stage" {
  description = "launch_stage of the worker pools (they were a preview feature when provider 6.38 shipped)."
  type        = string
  default     = "BETA"
}

variable "worker_instances" {
  description = "Always-on instances per worker: min instances of a worker service, or the manual instance count of a worker pool."
  type = object({
    embedder = number
    writer   = number
  })
  default = {
    embedder = 1
    writer   = 1
  }
}

variable "worker_max_instances" {
  description = "Max instances of the embedder and writer when they run as Cloud Run services."
  type        = number
  default     = 3
}

variable "chunker_max_instances" {
  description = "Max instances of the chunker service."
  type        = number
  default     = 10
}

variable "chunker_concurrency" {
  description = "Concurrent push requests per chunker instance (text extraction is CPU-bound)."
  type        = number
  default     = 4
}

variable "query_min_instances" {
  description = "Min instances of the query service (1 avoids cold starts)."
  type        = number
  default     = 0
}

variable "query_max_instances" {
  description = "Max instances of the query service."
  type        = number
  default     = 5
}

variable "query_public" {
  description = "Let anyone on the internet call the query service (allUsers gets roles/run.invoker)."
  type        = bool
  default     = false
}

variable "query_invokers" {
  description = "IAM members allowed to call the query service when it is not public."
  type        = list(string)
  default     = []
}

variable "deletion_protection" {
  description = "Refuse to destroy the Cloud Run services and worker pools."
  type        = bool
  default     = true
}

# --- Network and AlloyDB -------------------------------------------------------

variable "network_name" {
  description = "Name of the VPC created for AlloyDB private service access and Cloud Run direct VPC egress."
  type        = string
  default     = "ragrun"
}

variable "subnet_cidr" {
  description = "Subnet Cloud Run direct VPC egress takes addresses from."
  type        = string
  default     = "10.8.0.0/24"
}

variable "psa_prefix_length" {
  description = "Prefix length of the range reserved for private service access (AlloyDB)."
  type        = number
  default     = 16
}

variable "alloydb_cluster_id" {
  description = "AlloyDB cluster id."
  type        = string
  default     = "ragrun"
}

variable "alloydb_instance_id" {
  description = "AlloyDB primary instance id."
  type        = string
  default     = "ragrun-primary"
}

variable "alloydb_database_version" {
  description = "AlloyDB PostgreSQL major version (pgvector is the `vector` extension)."
  type        = string
  default     = "POSTGRES_16"
}

variable "alloydb_cpu_count" {
  description = "vCPUs of the primary instance."
  type        = number
  default     = 2
}

variable "alloydb_availability_type" {
  description = "ZONAL (one node) or REGIONAL (standby in another zone)."
  type        = string
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.alloydb_availability_type)
    error_message = "alloydb_availability_type must be ZONAL or REGIONAL."
  }
}

variable "alloydb_backup_retention_days" {
  description = "Point-in-time recovery window of the cluster."
  type        = number
  default     = 14
}

variable "database_user" {
  description = "Built-in AlloyDB user the services connect as; its password is generated and kept in Secret Manager."
  type        = string
  default     = "postgres"
}

variable "database_name" {
  description = "Database in DATABASE_URL. AlloyDB creates only `postgres`; create another one yourself before pointing this at it."
  type        = string
  default     = "postgres"
}
