resource "random_password" "db" {
  length           = 32
  special          = true
  override_special = "-_" # safe inside DATABASE_URL without escaping
}

resource "google_alloydb_cluster" "ragrun" {
  cluster_id       = var.alloydb_cluster_id
  location         = var.region
  database_version = var.alloydb_database_version

  network_config {
    network            = google_compute_network.ragrun.id
    allocated_ip_range = google_compute_global_address.psa.name
  }

  initial_user {
    user     = var.database_user
    password = random_password.db.result
  }

  continuous_backup_config {
    enabled              = true
    recovery_window_days = var.alloydb_backup_retention_days
  }

  depends_on = [google_service_networking_connection.psa]
}

resource "google_alloydb_instance" "primary" {
  cluster           = google_alloydb_cluster.ragrun.name
  instance_id       = var.alloydb_instance_id
  instance_type     = "PRIMARY"
  availability_type = var.alloydb_availability_type

  machine_config {
    cpu_count = var.alloydb_cpu_count
  }
}

# The password on its own, for people and migrations.
resource "google_secret_manager_secret" "db_password" {
  secret_id = "ragrun-db-password"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "db_password" {
  secret      = google_secret_manager_secret.db_password.id
  secret_data = random_password.db.result
}

# What the writer and query read as DATABASE_URL. AlloyDB only accepts encrypted
# connections on its private IP, hence sslmode=require.
resource "google_secret_manager_secret" "database_url" {
  secret_id = "ragrun-database-url"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "database_url" {
  secret      = google_secret_manager_secret.database_url.id
  secret_data = "postgresql://${var.database_user}:${random_password.db.result}@${google_alloydb_instance.primary.ip_address}:5432/${var.database_name}?sslmode=require"
}

# An optional read pool: the query service reads from it, the writer keeps the primary.
resource "google_alloydb_instance" "read_pool" {
  count = var.alloydb_read_pool_nodes > 0 ? 1 : 0

  cluster       = google_alloydb_cluster.ragrun.name
  instance_id   = "${var.alloydb_instance_id}-read"
  instance_type = "READ_POOL"

  read_pool_config {
    node_count = var.alloydb_read_pool_nodes
  }

  machine_config {
    cpu_count = var.alloydb_cpu_count
  }

  depends_on = [google_alloydb_instance.primary]
}

# What the query service reads as DATABASE_URL: the read pool when there is one.
resource "google_secret_manager_secret" "query_database_url" {
  secret_id = "ragrun-query-database-url"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "query_database_url" {
  secret      = google_secret_manager_secret.query_database_url.id
  secret_data = "postgresql://${var.database_user}:${random_password.db.result}@${var.alloydb_read_pool_nodes > 0 ? google_alloydb_instance.read_pool[0].ip_address : google_alloydb_instance.primary.ip_address}:5432/${var.database_name}?sslmode=require"
}
