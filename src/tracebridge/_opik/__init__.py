"""Opik: wire models, conversion to and from canonical records, folder and API endpoints."""
