"""The protocol-independent chat world: model, service and realm."""
