"""E-mail notifications: templates (success, failure, refund) and senders (SMTP or outbox)."""
