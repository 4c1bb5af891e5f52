"""Every setting is read and checked in ``Settings.from_env``; a bad value is one
error naming the variable, the value's problem and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigurationError
from core.settings import Settings, log_level


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KLAVIYO_EXPORT_BATCH_PROFILES", "abc", "'abc' is not a whole number: allowed 1 to 10000"),
        ("KLAVIYO_EXPORT_BATCH_PROFILES", "20000", "'20000' is out of range: allowed 1 to 10000"),
        ("KLAVIYO_EXPORT_RATE_HEADROOM", "1.5", "'1.5' is out of range: allowed 0.01 to 1.0"),
        ("KLAVIYO_EXPORT_RATE_HEADROOM", "nan", "'nan' is out of range"),
        ("KLAVIYO_EXPORT_VISIBILITY_TIMEOUT", "5", "'5' is out of range: allowed 10 or more s"),
        ("KLAVIYO_EXPORT_MAX_PROFILES_PER_RUN", "-1", "allowed 0 or more profiles (0: no cap)"),
        ("KLAVIYO_READ_TIMEOUT", "soon", "'soon' is not a number"),
        ("KLAVIYO_POOL_SIZE", "0", "'0' is out of range: allowed 1 to 1000 connections"),
        ("KLAVIYO_BASE_URL", "a.klaviyo.com", "is not an http:// or https:// URL"),
        ("KLAVIYO_EXPORT_REFRESH_CRON", "0 3 *", "a cron expression has five fields"),
        ("KLAVIYO_EXPORT_REFRESH_CRON", "61 * * * *", "KLAVIYO_EXPORT_REFRESH_CRON"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_allowed_range(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value).startswith(name)
    assert message in str(raised.value)


def test_defaults_and_client_settings() -> None:
    settings = Settings.from_env({"KLAVIYO_BASE_URL": "http://127.0.0.1:8025/"})
    assert (settings.batch_profiles, settings.rate_headroom) == (10_000, 0.9)
    assert settings.klaviyo.base_url == "http://127.0.0.1:8025"
    assert Settings.from_env({}).klaviyo.base_url == "https://a.klaviyo.com"
    assert Settings.from_env({"KLAVIYO_EXPORT_REFRESH_CRON": ""}).refresh_cron is None


def test_a_secret_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("  the-key\n")
    url = tmp_path / "url"
    url.write_text("redis://:pw@redis:6379/1\n")
    settings = Settings.from_env(
        {"KLAVIYO_EXPORT_SECRET_KEY_FILE": str(secret), "REDIS_URL_FILE": str(url)}
    )
    assert settings.secret_key == "the-key"
    assert settings.store_url == settings.broker_url == "redis://:pw@redis:6379/1"


def test_a_secret_file_problem_never_shows_the_secret(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("the-key")
    with pytest.raises(ConfigurationError, match="are both set") as both:
        Settings.from_env(
            {"KLAVIYO_EXPORT_SECRET_KEY": "other", "KLAVIYO_EXPORT_SECRET_KEY_FILE": str(secret)}
        )
    assert "the-key" not in str(both.value)
    assert "other" not in str(both.value)
    with pytest.raises(ConfigurationError, match=r"cannot read .*missing"):
        Settings.from_env({"KLAVIYO_EXPORT_SECRET_KEY_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigurationError, match="is empty"):
        Settings.from_env({"KLAVIYO_EXPORT_SECRET_KEY_FILE": str(tmp_path / "empty")})


def test_urls_and_log_levels_are_checked_without_showing_a_password() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({"REDIS_URL": "127.0.0.1:6379"})
    assert str(raised.value).startswith("REDIS_URL is not a URL this setting takes")
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({"CELERY_BROKER_URL": "http://user:s3cret@rabbit/"})
    assert "s3cret" not in str(raised.value)
    assert Settings.from_env({"CELERY_BROKER_URL": "amqp://g:g@h//"}).broker_url.startswith("amqp")
    with pytest.raises(ConfigurationError, match="is out of range"):
        Settings.from_env({"KLAVIYO_EXPORT_STALL_SECONDS": "inf"})
    with pytest.raises(ConfigurationError, match="is not a log level"):
        log_level({"KLAVIYO_EXPORT_LOG_LEVEL": "loud"})
    assert log_level({"KLAVIYO_EXPORT_LOG_LEVEL": "debug"}) == "DEBUG"
