# GCP: a workload identity pool provider that trusts TokenBroker, with attribute mapping and a condition, and a
# service account that only broker tokens of the rule infra-production-apply can impersonate.
#
# The job asks the broker for the audience below (requested_token_type=...:jwt) and exchanges it at
# sts.googleapis.com (e.g. with `gcloud iam workload-identity-pools create-cred-config ... --credential-source-file`).

variable "project_id" { type = string }
variable "project_number" { type = string }

variable "broker_issuer" {
  type    = string
  default = "https://sts.ci.example.com"
}

resource "google_iam_workload_identity_pool" "ci" {
  project                   = var.project_id
  workload_identity_pool_id = "ci-tokenbroker"
  display_name              = "CI via TokenBroker"
}

resource "google_iam_workload_identity_pool_provider" "tokenbroker" {
  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.ci.workload_identity_pool_id
  workload_identity_pool_provider_id = "tokenbroker"

  oidc {
    issuer_uri = var.broker_issuer
    # The audience the broker rule grants (see rules.yaml).
    allowed_audiences = ["https://iam.googleapis.com/projects/${var.project_number}/locations/global/workloadIdentityPools/ci-tokenbroker/providers/tokenbroker"]
  }

  attribute_mapping = {
    "google.subject"        = "assertion.sub"
    "attribute.provider"    = "assertion.provider"
    "attribute.repo_id"     = "assertion.repo_id"
    "attribute.rule"        = "assertion.rule"
    "attribute.environment" = "assertion.environment"
  }

  # Defence in depth: the broker already decided, but the pool only accepts tokens of this one rule.
  attribute_condition = "assertion.rule == 'infra-production-apply' && assertion.repo_id == '4242'"
}

resource "google_service_account" "infra_apply" {
  project    = var.project_id
  account_id = "infra-apply"
}

resource "google_service_account_iam_member" "infra_apply" {
  service_account_id = google_service_account.infra_apply.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "principal://iam.googleapis.com/projects/${var.project_number}/locations/global/workloadIdentityPools/ci-tokenbroker/subject/gitlab:platform/infra:production"
}
