"""What brings data in or talks to providers: HTTP ingress, booking bridge, provider
clients and sandboxes, e-mail."""
