# A VPC whose only jobs are to peer with AlloyDB (private service access) and to
# give the writer and query direct VPC egress to the database's private IP.

resource "google_compute_network" "ragrun" {
  name                    = var.network_name
  auto_create_subnetworks = false

  depends_on = [google_project_service.apis]
}

resource "google_compute_subnetwork" "run" {
  name                     = "${var.network_name}-run"
  region                   = var.region
  network                  = google_compute_network.ragrun.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  # Flow logs of the only traffic here (Cloud Run to AlloyDB), sampled and aggregated
  # so they cost little: enough to see who talked to the database when.
  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Nothing needs to reach into this VPC: Cloud Run direct VPC egress and AlloyDB's
# peering only open connections outwards (replies are allowed by connection
# tracking). This rule states the implied ingress deny in code, where a review sees it.
resource "google_compute_firewall" "deny_ingress" {
  name      = "${var.network_name}-deny-ingress"
  network   = google_compute_network.ragrun.id
  direction = "INGRESS"
  priority  = 65534

  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }
}

resource "google_compute_global_address" "psa" {
  name          = "${var.network_name}-psa"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.psa_prefix_length
  network       = google_compute_network.ragrun.id
}

resource "google_service_networking_connection" "psa" {
  network                 = google_compute_network.ragrun.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.psa.name]
}
