"""The HTTP front door: the REST API under ``/api/v1`` and the console at ``/``."""
