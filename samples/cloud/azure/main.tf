# Azure: a federated identity credential on an app registration (or user-assigned managed identity) that trusts
# TokenBroker as its issuer. Azure AD accepts only RS256-signed assertions, so the broker signs tokens for the
# audience api://AzureADTokenExchange with an RS256 key (broker.yaml beside this file), and ES256 for the rest.
#
# The job asks the broker for audience api://AzureADTokenExchange (requested_token_type=...:jwt) and logs in with
#   az login --service-principal -u <client-id> -t <tenant-id> --federated-token "$TOKEN"

variable "broker_issuer" {
  type    = string
  default = "https://sts.ci.example.com"
}

resource "azuread_application" "payments_deploy" {
  display_name = "payments-deploy"
}

resource "azuread_service_principal" "payments_deploy" {
  client_id = azuread_application.payments_deploy.client_id
}

resource "azuread_application_federated_identity_credential" "tokenbroker" {
  application_id = azuread_application.payments_deploy.id
  display_name   = "tokenbroker-payments-production"
  description    = "Production deploys of octo-org/payments, via TokenBroker rule payments-deploy-azure"
  issuer         = var.broker_issuer
  # Exactly the subject the rule issues: github:{repository}:{environment}
  subject        = "github:octo-org/payments:production"
  audiences      = ["api://AzureADTokenExchange"]
}
