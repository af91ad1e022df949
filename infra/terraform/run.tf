# --- chunker: HTTP, pushed to by the objects subscription -----------------------

resource "google_cloud_run_v2_service" "chunker" {
  name                = "ragrun-chunker"
  location            = var.region
  deletion_protection = var.deletion_protection
  # Pub/Sub push from this project counts as internal traffic.
  ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account                  = google_service_account.chunker.email
    timeout                          = "${var.ack_deadline_seconds.chunker}s"
    max_instance_request_concurrency = var.chunker_concurrency

    scaling {
      min_instance_count = 0
      max_instance_count = var.chunker_max_instances
    }

    containers {
      image = local.images.chunker

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
        cpu_idle = true
      }

      dynamic "env" {
        for_each = merge(local.common_env, local.traced_env)
        content {
          name  = env.key
          value = env.value
        }
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_storage_bucket_iam_member.chunker_reads_documents,
    google_pubsub_topic_iam_member.chunker_publishes_chunks,
  ]
}

# --- embedder and writer: Pub/Sub streaming-pull workers ------------------------

locals {
  workers = {
    embedder = {
      name            = "ragrun-embedder"
      service_account = google_service_account.embedder.email
      image           = local.images.embedder
      memory          = "1Gi"
      instances       = var.worker_instances.embedder
      database        = false
      vpc             = false
    }
    writer = {
      name            = "ragrun-writer"
      service_account = google_service_account.writer.email
      image           = local.images.writer
      memory          = "1Gi"
      instances       = var.worker_instances.writer
      database        = true
      vpc             = true
    }
  }
}

# As services: CPU always allocated (cpu_idle = false) and at least one instance,
# so the streaming pull keeps running between requests. No one may invoke them.
resource "google_cloud_run_v2_service" "worker" {
  for_each = var.worker_runtime == "service" ? local.workers : {}

  name                = each.value.name
  location            = var.region
  deletion_protection = var.deletion_protection
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account = each.value.service_account

    scaling {
      min_instance_count = max(each.value.instances, 1)
      max_instance_count = max(var.worker_max_instances, each.value.instances, 1)
    }

    dynamic "vpc_access" {
      for_each = each.value.vpc ? [1] : []
      content {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = google_compute_network.ragrun.name
          subnetwork = google_compute_subnetwork.run.name
        }
      }
    }

    containers {
      image = each.value.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = each.value.memory
        }
        cpu_idle = false
      }

      dynamic "env" {
        for_each = merge(local.common_env, local.traced_env)
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = each.value.database ? [google_secret_manager_secret.database_url.secret_id] : []
        content {
          name = "DATABASE_URL"
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_pubsub_subscription_iam_member.embedder_pulls_chunks,
    google_pubsub_topic_iam_member.embedder_publishes_vectors,
    google_pubsub_subscription_iam_member.writer_pulls_vectors,
    google_secret_manager_secret_iam_member.writer_database_url,
    google_secret_manager_secret_version.database_url,
  ]
}

# As worker pools: no port, no ingress, a fixed number of always-on instances.
resource "google_cloud_run_v2_worker_pool" "worker" {
  for_each = var.worker_runtime == "worker_pool" ? local.workers : {}

  name                = each.value.name
  location            = var.region
  deletion_protection = var.deletion_protection
  launch_stage        = var.worker_pool_launch_stage

  # The Worker Pools API scales by instance count only (the provider's scaling_mode
  # and min/max fields are not part of it).
  scaling {
    manual_instance_count = each.value.instances
  }

  template {
    service_account = each.value.service_account

    dynamic "vpc_access" {
      for_each = each.value.vpc ? [1] : []
      content {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = google_compute_network.ragrun.name
          subnetwork = google_compute_subnetwork.run.name
        }
      }
    }

    containers {
      image = each.value.image

      resources {
        limits = {
          cpu    = "1"
          memory = each.value.memory
        }
      }

      dynamic "env" {
        for_each = merge(local.common_env, local.traced_env)
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = each.value.database ? [google_secret_manager_secret.database_url.secret_id] : []
        content {
          name = "DATABASE_URL"
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_pubsub_subscription_iam_member.embedder_pulls_chunks,
    google_pubsub_topic_iam_member.embedder_publishes_vectors,
    google_pubsub_subscription_iam_member.writer_pulls_vectors,
    google_secret_manager_secret_iam_member.writer_database_url,
    google_secret_manager_secret_version.database_url,
  ]
}

# --- query: REST -----------------------------------------------------------------

resource "google_cloud_run_v2_service" "query" {
  name                = "ragrun-query"
  location            = var.region
  deletion_protection = var.deletion_protection
  ingress             = "INGRESS_TRAFFIC_ALL" # who may call it is IAM's job (query_invokers / query_public)

  template {
    service_account = google_service_account.query.email

    scaling {
      min_instance_count = var.query_min_instances
      max_instance_count = var.query_max_instances
    }

    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = google_compute_network.ragrun.name
        subnetwork = google_compute_subnetwork.run.name
      }
    }

    containers {
      image = local.images.query

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
        cpu_idle = true
      }

      dynamic "env" {
        for_each = merge(local.common_env, local.traced_env)
        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name = "DATABASE_URL"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.query_database_url.secret_id
            version = "latest"
          }
        }
      }

      # A read pool cannot take schema migrations: the writer applies them.
      env {
        name  = "RAGRUN_QUERY_MIGRATE"
        value = var.alloydb_read_pool_nodes > 0 ? "false" : "true"
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.query_database_url,
    google_secret_manager_secret_version.query_database_url,
  ]
}
