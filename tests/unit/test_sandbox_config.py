"""Sandbox options: flag parsing, validation and the revision rule."""

from __future__ import annotations

import pytest

from sandbox.config import SandboxConfig, parse_api_key, parse_list
from sandbox.spec import SUPPORTED_REVISIONS, revision_problem


def test_api_key_without_scopes_has_every_scope() -> None:
    assert parse_api_key("pk_abc") == ("pk_abc", None)


def test_api_key_with_scopes() -> None:
    key, scopes = parse_api_key("pk_abc:lists:read,profiles:write")
    assert key == "pk_abc"
    assert scopes == frozenset({"lists:read", "profiles:write"})


def test_api_key_with_empty_scope_list_has_none() -> None:
    assert parse_api_key("pk_abc:") == ("pk_abc", frozenset())


@pytest.mark.parametrize("text", ["", ":lists:read", "pk:lists", "pk:lists:delete"])
def test_bad_api_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_api_key(text)


def test_list_with_and_without_name() -> None:
    assert parse_list("Y6nRLr") == ("Y6nRLr", "Y6nRLr")
    assert parse_list("Y6nRLr:VIP customers") == ("Y6nRLr", "VIP customers")


@pytest.mark.parametrize("text", ["", "bad id", "a/b:name"])
def test_bad_list_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid list id"):
        parse_list(text)


def test_defaults_are_quick_and_realistic() -> None:
    config = SandboxConfig(api_keys={"pk_a": None})
    assert config.job_queue_seconds == 0.2
    assert config.job_profiles_per_second == 50_000
    assert config.rate_limit_scale == 1.0
    assert config.fault_rate == 0.0
    assert config.lists == {}


def test_config_is_read_only() -> None:
    config = SandboxConfig(api_keys={"pk_a": {"lists:read"}}, lists={"Y6nRLr": "N"})  # type: ignore[dict-item]
    assert config.api_keys["pk_a"] == frozenset({"lists:read"})
    with pytest.raises(TypeError):
        config.lists["other"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"api_keys": {}}, "at least one API key"),
        ({"api_keys": {"has space": None}}, "API key"),
        ({"api_keys": {"pk": frozenset({"nonsense"})}}, "invalid scope"),
        ({"lists": {"no-dash": "x"}}, "invalid list id"),
        ({"lists": {"Y6nRLr": " "}}, "non-empty name"),
        ({"job_queue_seconds": -1}, "job_queue_seconds"),
        ({"job_profiles_per_second": 0}, "job_profiles_per_second"),
        ({"fail_email": "("}, "fail_email"),
        ({"rate_limit_scale": -0.5}, "rate_limit_scale"),
        ({"fault_rate": 1.5}, "fault_rate"),
        ({"latency_ms": -1}, "latency_ms"),
    ],
)
def test_invalid_options_are_refused(overrides: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"api_keys": {"pk_a": None}}
    options.update(overrides)
    with pytest.raises(ValueError, match=message):
        SandboxConfig(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "revision",
    ["2025-01-15", "2026-07-15", "2026-10-15", "2026-10-15.pre", " 2026-04-15 "],
)
def test_supported_revisions(revision: str) -> None:
    assert revision_problem(revision) is None


@pytest.mark.parametrize(
    ("revision", "problem"),
    [
        (None, "missing"),
        ("", "missing"),
        ("latest", "malformed"),
        ("2026/07/15", "malformed"),
        ("2026-07-15.", "malformed"),
        ("2024-10-15", "unsupported"),
        ("2027-01-15", "unsupported"),
        ("2026-07-15.beta", "unsupported"),
    ],
)
def test_refused_revisions(revision: str | None, problem: str) -> None:
    assert revision_problem(revision) == problem


def test_supported_revisions_cover_the_two_year_window() -> None:
    assert min(SUPPORTED_REVISIONS) == "2025-01-15"
    assert {"2026-07-15", "2026-10-15"} <= SUPPORTED_REVISIONS
