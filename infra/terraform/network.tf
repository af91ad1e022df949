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
