"""The Celery application the workers run (``celery -A worker worker``)."""

from __future__ import annotations

from celery import Celery

from klaviyo_export.settings import Settings
from worker.config import celery_config

app = Celery("klaviyo_export_worker")
app.config_from_object(celery_config(Settings.from_env()))
app.autodiscover_tasks(["worker"], related_name="tasks", force=True)
