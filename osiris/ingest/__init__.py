"""Chat channels in (WhatsApp via Twilio, Slack, email) and replies out."""
