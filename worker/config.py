"""Celery settings for the workers, each with the reason it has its value.

Read by ``worker.celery_app``; every URL comes from ``core.settings``.

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a batch whose worker
  dies is delivered again rather than lost; tasks are idempotent (a batch's
  result is recorded once, its Klaviyo job id is kept across deliveries).
- ``worker_prefetch_multiplier = 1``: a worker holds one message per process,
  so a slow batch never strands others behind it.
- ``visibility_timeout`` (Redis broker): above the task time limit plus the
  longest retry countdown, or Redis would deliver a running task again. Set in
  all three places the Celery docs name.
- ``result_expires``: chord counters live in the result backend and expire
  with it; a day is longer than any run.
- ``result_extended = False``: it would store the raw task arguments.
- ``task_ignore_result = False``: chord members must store results.
- ``worker_send_task_events`` / ``task_send_sent_event``: Flower sees tasks.
- ``beat_schedule``: the watchdog (``worker.watchdog``) every
  ``KLAVIYO_EXPORT_WATCHDOG_SECONDS``, and the schedule tick
  (``worker.schedules``) every minute; run ``celery -A worker beat`` once per
  deployment (a second beat sends no second request: minutes are claimed).
- Queues: uploads, polls and control apart (see ``schemas.tasks``); a plain
  ``celery -A worker worker`` consumes all three.
- ``task_publish_retry_policy``: a publish (a task's retry, a chord's
  callback) keeps trying for about a minute, so a broker restart is ridden
  out. With Celery's default (three tries in 0.6 s) a batch that retried
  while Redis restarted was rejected (``Task.retry`` turns a failed publish
  into ``Reject``), its chord raised ``ChordError`` and the run ended
  ``failed`` though every batch later completed. The time a task spends
  here counts toward its time limit.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from core.settings import Settings
from schemas import tasks

MAX_TASK_SECONDS = 120
PUBLISH_RETRY_POLICY = {
    "max_retries": 30,
    "interval_start": 0.5,
    "interval_step": 0.5,
    "interval_max": 2.0,
}
"""About a minute of tries: 0.5, 1, 1.5, then every 2 s."""


def task_time_limit(settings: Settings) -> int:
    """A third of the visibility timeout at most (and two minutes), so that a
    running task plus its countdown never reaches it: Redis would deliver it
    again while it still runs."""
    return min(MAX_TASK_SECONDS, settings.visibility_timeout // 3)


def max_countdown(settings: Settings) -> float:
    """The longest a task may wait in a countdown: the other third (and never
    more than five minutes)."""
    return float(min(300, settings.visibility_timeout // 3))


def celery_config(settings: Settings) -> dict[str, Any]:
    vt = settings.visibility_timeout
    transport: dict[str, Any] = {"visibility_timeout": vt}
    if vt < 300:
        # A short timeout exists to recover fast: sweep for orphans often too.
        transport |= {"unacked_restore_interval": max(1, vt // 10), "unacked_restore_throttle": 1}
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": task_time_limit(settings),
        "task_soft_time_limit": int(task_time_limit(settings) * 0.8),
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": vt},
        "visibility_timeout": vt,
        "result_expires": 24 * 3600,
        "result_extended": False,
        "task_ignore_result": False,
        "result_backend_always_retry": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "broker_connection_retry_on_startup": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": dict(PUBLISH_RETRY_POLICY),
        "worker_hijack_root_logger": False,
        "task_default_queue": tasks.CONTROL_QUEUE,
        "task_queues": tasks.queues(),
        "task_routes": dict(tasks.ROUTES),
        "beat_schedule": {
            "watchdog": {"task": tasks.WATCHDOG, "schedule": settings.watchdog_seconds},
            "schedule-tick": {"task": tasks.SCHEDULE_TICK, "schedule": crontab()},  # each minute
        },
    }
