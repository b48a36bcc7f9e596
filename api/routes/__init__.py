"""Handlers, one module per area; each exports ``OPERATIONS`` (see ``api.openapi``)."""
