"""Outbound webhooks: an organization's task events POSTed, signed, to the URLs its admins subscribe.

`events.record_event` (and the claim statement) find the matching subscriptions inside the very
statement that writes the event (`subscriptions.MATCHING_SUBSCRIPTIONS_SQL`), so the common case, no
subscription, costs no extra round trip; a match enqueues one `deliver_webhook` job per subscription
in the same transaction (`delivery.enqueue_deliveries`). The job POSTs `{id, type, created_at, task,
data}` signed like Stripe and Slack (`OSIRIS-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"{t}.{body}">`), to exactly the configured URL: redirects are failures, never followed. Every attempt
is a row in `webhook_deliveries`.

- `destinations`: the SSRF guard. The host is resolved once per attempt, every address checked, and
  the POST goes to a checked address (the Host header and TLS name stay the URL's), so a name that
  rebinds between check and connect reaches nothing new.
- `subscriptions`: what admins manage (their organization only): create, edit, enable/disable,
  rotate the secret (the previous one keeps signing for a grace period: two `v1=`), delete, the
  delivery log and redelivery; and the matching rule the event statement embeds.
- `delivery`: the `deliver_webhook` job: the body, the signature, the POST, retries, and the
  auto-disable of a subscription that keeps failing.
"""
