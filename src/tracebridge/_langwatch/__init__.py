"""LangWatch: wire models, conversion to and from canonical records, file and API endpoints."""
