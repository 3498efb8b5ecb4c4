"""What the security suite's live app is configured with: every webhook on, with these secrets."""

from __future__ import annotations

SECRETS = {
    "github_webhook_secret": "gh-webhook-secret-" + "s" * 20,
    "twilio_auth_token": "twilio-auth-token-" + "t" * 20,
    "slack_signing_secret": "slack-signing-secret-" + "x" * 20,
    "email_webhook_secret": "email-webhook-secret-" + "e" * 20,
}
