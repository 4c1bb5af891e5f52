"""Helpers for tests that talk to the Klaviyo sandbox over real HTTP.

``running_sandbox(**overrides)`` starts a :class:`sandbox.SandboxServer` on a
free port with quick job speeds and one seeded list; ``SandboxClient`` is a
``requests`` session that sends the headers Klaviyo wants and takes paths
relative to the sandbox.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import requests

from sandbox import SandboxConfig, SandboxServer

API_KEY = "pk_sandboxtest0000000000000000000001"
OTHER_KEY = "pk_sandboxtest0000000000000000000002"
LIST_ID = "Y6nRLr"
REVISION = "2026-07-15"
JOBS = "/api/profile-bulk-import-jobs"


def fast_config(**overrides: Any) -> SandboxConfig:
    """A config for tests: jobs finish within milliseconds, one list, one key."""
    options: dict[str, Any] = {
        "api_keys": {API_KEY: None},
        "lists": {LIST_ID: "Newsletter"},
        "job_queue_seconds": 0.0,
        "job_profiles_per_second": 1_000_000.0,
    }
    options.update(overrides)
    return SandboxConfig(**options)


@contextmanager
def running_sandbox(**overrides: Any) -> Iterator[SandboxServer]:
    """A started sandbox (``clock=`` is passed to the server, the rest to the config)."""
    clock = overrides.pop("clock", None)
    with SandboxServer(fast_config(**overrides), clock=clock) as server:
        yield server


class SandboxClient:
    """A keep-alive session against one sandbox with Klaviyo's headers."""

    def __init__(
        self, server: SandboxServer, key: str | None = API_KEY, revision: str | None = REVISION
    ) -> None:
        self.base_url = server.base_url
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/vnd.api+json"
        if key is not None:
            self.session.headers["Authorization"] = f"Klaviyo-API-Key {key}"
        if revision is not None:
            self.session.headers["revision"] = revision

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url(path), timeout=10, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", {"Content-Type": "application/vnd.api+json"})
        return self.session.post(self.url(path), json=body, timeout=30, **kwargs)

    def delete(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", {"Content-Type": "application/vnd.api+json"})
        return self.session.delete(self.url(path), json=body, timeout=10, **kwargs)

    def close(self) -> None:
        self.session.close()

    def import_profiles(
        self, profiles: Sequence[dict[str, Any]], list_ids: Sequence[str] = (LIST_ID,)
    ) -> str:
        """Start a bulk import job; returns its id."""
        response = self.post(JOBS, import_body(profiles, list_ids))
        assert response.status_code == 202, response.text
        job_id: str = response.json()["data"]["id"]
        return job_id

    def wait_for_job(self, job_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll until the job is complete; returns its attributes."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(f"{JOBS}/{job_id}")
            assert response.status_code == 200, response.text
            attributes: dict[str, Any] = response.json()["data"]["attributes"]
            if attributes["status"] == "complete":
                return attributes
            assert time.monotonic() < deadline, f"job still {attributes['status']}"
            time.sleep(0.01)

    def collect(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated collection, following ``links.next``."""
        items: list[dict[str, Any]] = []
        response = self.get(path, params=params or None)
        while True:
            assert response.status_code == 200, response.text
            body = response.json()
            items.extend(body["data"])
            next_url = body["links"].get("next")
            if not next_url:
                return items
            response = self.get(next_url)


def profile(email: str, **attributes: Any) -> dict[str, Any]:
    """One profile object for a bulk import body."""
    return {"type": "profile", "attributes": {"email": email, **attributes}}


def import_body(
    profiles: Sequence[dict[str, Any]], list_ids: Sequence[str] = (LIST_ID,)
) -> dict[str, Any]:
    """A ``ProfileImportJobCreateQuery`` body."""
    data: dict[str, Any] = {
        "type": "profile-bulk-import-job",
        "attributes": {"profiles": {"data": list(profiles)}},
    }
    if list_ids:
        data["relationships"] = {
            "lists": {"data": [{"type": "list", "id": list_id} for list_id in list_ids]}
        }
    return {"data": data}


def emails(count: int, prefix: str = "user", start: int = 0) -> list[str]:
    return [f"{prefix}{index}@example.com" for index in range(start, start + count)]
