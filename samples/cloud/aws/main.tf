# AWS: trust TokenBroker as an IAM OIDC identity provider, and let one role be assumed with broker tokens
# issued by the rule payments-deploy-prod (rules.yaml beside this file).
#
# The job asks the broker for audience sts.amazonaws.com with requested_token_type=...:jwt, then calls
# sts:AssumeRoleWithWebIdentity with that token. The session tags come from the token's
# https://aws.amazon.com/tags claim (principal_tags), so IAM policies can use aws:PrincipalTag/repo.

variable "broker_issuer" {
  description = "TokenBroker's issuer URL (TokenBroker:Issuer), https, no trailing slash."
  type        = string
  default     = "https://sts.ci.example.com"
}

locals {
  # IAM condition keys use the issuer without its scheme.
  broker_host = trimprefix(var.broker_issuer, "https://")
}

data "tls_certificate" "broker" {
  url = var.broker_issuer
}

resource "aws_iam_openid_connect_provider" "tokenbroker" {
  url             = var.broker_issuer
  client_id_list  = ["sts.amazonaws.com"]
  # AWS no longer uses the thumbprint for providers with a publicly trusted certificate, but the API requires one.
  thumbprint_list = [data.tls_certificate.broker.certificates[0].sha1_fingerprint]
}

data "aws_iam_policy_document" "payments_deploy_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.tokenbroker.arn]
    }

    # Exactly the audience and subject the broker rule issues: github:{repository}:{environment}.
    condition {
      test     = "StringEquals"
      variable = "${local.broker_host}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.broker_host}:sub"
      values   = ["github:octo-org/payments:production"]
    }

    # Session tags come only from the broker's token, and only these keys.
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "aws:TagKeys"
      values   = ["repo", "environment"]
    }
  }
}

resource "aws_iam_role" "payments_deploy" {
  name                 = "payments-deploy"
  assume_role_policy   = data.aws_iam_policy_document.payments_deploy_trust.json
  max_session_duration = 3600
}

# Example permission that uses the session tag: only objects under the repository's own prefix.
data "aws_iam_policy_document" "payments_deploy" {
  statement {
    actions   = ["s3:PutObject"]
    resources = ["arn:aws:s3:::deploy-artifacts/$${aws:PrincipalTag/repo}/*"]
  }
}

resource "aws_iam_role_policy" "payments_deploy" {
  role   = aws_iam_role.payments_deploy.id
  policy = data.aws_iam_policy_document.payments_deploy.json
}
