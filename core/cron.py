"""Five-field cron expressions (minute hour day-of-month month day-of-week),
read with Celery's own parser so that a schedule means what beat means by it."""

from __future__ import annotations

from celery.schedules import crontab


def parse_cron(expression: str) -> crontab:
    """The parsed schedule; ``ValueError`` says what is wrong with it."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(f"cron {expression!r}: a cron expression has five fields")
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except (ValueError, IndexError) as exc:
        raise ValueError(f"cron {expression!r}: {exc}") from None
