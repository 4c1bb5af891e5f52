"""The Celery workers: upload batches to Klaviyo and aggregate each run.

``celery -A worker worker`` finds ``app`` here.
"""

from worker.celery_app import app

__all__ = ["app"]
