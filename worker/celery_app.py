"""The Celery application the workers run (``celery -A worker worker``).

Every task's base is ``worker.run_task.RunTask`` (Redis away: the task is
retried; the run's records gone: one log line), and the consumer logs one line when
its broker connection comes back (``worker.reconnect``).
"""

from __future__ import annotations

from celery import Celery

from core import broker
from core.settings import Settings
from worker.config import celery_config
from worker.reconnect import BrokerBack

broker.install()  # before any connection: see core.broker
app = Celery("klaviyo_export_worker", task_cls="worker.run_task:RunTask")
app.config_from_object(celery_config(Settings.from_env()))
app.steps["consumer"].add(BrokerBack)
app.autodiscover_tasks(["worker"], related_name="tasks", force=True)
