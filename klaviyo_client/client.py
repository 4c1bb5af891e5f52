"""The one Klaviyo HTTP client every task and command uses.

Options (``ClientSettings``), each also read from the environment by
``ClientSettings.from_env``:

- ``base_url`` (``KLAVIYO_BASE_URL``, default ``https://a.klaviyo.com``): point
  it at the sandbox for tests and demos.
- ``connect_timeout`` (``KLAVIYO_CONNECT_TIMEOUT``, 5 s) and ``read_timeout``
  (``KLAVIYO_READ_TIMEOUT``, 60 s: a 5 MB import can take a while to accept).
- ``pool_size`` (``KLAVIYO_POOL_SIZE``, 16): keep-alive connections per host
  in this process's one pooled session.

Why a hook instead of retries: the client makes exactly one HTTP call per
method call (paging methods one per page) and raises a typed error
(``klaviyo_client.errors``). Waiting and retrying belong to the caller, which
knows whether it may sleep or must hand the work back to its queue. Before
every call it runs ``before_request(operation)``, where the worker acquires its
global rate limit.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from klaviyo_client.classify import error_for_exception, error_for_response
from klaviyo_client.constants import (
    DEFAULT_BASE_URL,
    MAX_EMAILS_PER_LOOKUP,
    MAX_IDS_PER_LIST_CALL,
    MAX_PAGE_SIZE,
    MEDIA_TYPE,
    REVISION,
    Operation,
)
from klaviyo_client.errors import PermissionDeniedError, RetriableError
from klaviyo_client.models import ImportErrorItem, ImportJob, KeyCheck, KlaviyoList, Profile

BeforeRequest = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ClientSettings:
    base_url: str = DEFAULT_BASE_URL
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    pool_size: int = 16

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSettings:
        env = os.environ if env is None else env
        return cls(
            base_url=env.get("KLAVIYO_BASE_URL", DEFAULT_BASE_URL).rstrip("/"),
            connect_timeout=float(env.get("KLAVIYO_CONNECT_TIMEOUT", "5")),
            read_timeout=float(env.get("KLAVIYO_READ_TIMEOUT", "60")),
            pool_size=int(env.get("KLAVIYO_POOL_SIZE", "16")),
        )


_sessions: dict[tuple[int, int], requests.Session] = {}
_sessions_lock = threading.Lock()


def process_session(pool_size: int = 16) -> requests.Session:
    """This process's pooled session; a forked child gets a fresh one.

    The session carries no credentials: the key rides on each request through
    ``_ApiKeyAuth``, so one pool serves every Klaviyo account.
    """
    key = (os.getpid(), pool_size)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers.update(
                {"Accept": MEDIA_TYPE, "revision": REVISION, "User-Agent": "klaviyo-export/0.1"}
            )
            _sessions[key] = session
        return session


class _ApiKeyAuth(requests.auth.AuthBase):
    """Adds the Authorization header per request; its repr never shows the key."""

    __slots__ = ("_header",)

    def __init__(self, api_key: str) -> None:
        self._header = f"Klaviyo-API-Key {api_key}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "_ApiKeyAuth(<redacted>)"


class KlaviyoClient:
    """Typed calls to the Klaviyo endpoints the exporter uses."""

    def __init__(
        self,
        api_key: str,
        settings: ClientSettings | None = None,
        *,
        before_request: BeforeRequest | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("an API key is required")
        self.settings = settings or ClientSettings.from_env()
        self._auth = _ApiKeyAuth(api_key.strip())
        self._before_request = before_request
        self._session = process_session(self.settings.pool_size)

    def __repr__(self) -> str:
        return f"KlaviyoClient(base_url={self.settings.base_url!r})"

    # -- transport -----------------------------------------------------------------

    def request(
        self,
        operation: str,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Any:
        """One call; returns the parsed JSON body (None for 204) or raises."""
        if self._before_request is not None:
            self._before_request(operation)
        url = path_or_url if "://" in path_or_url else self.settings.base_url + path_or_url
        headers = {"Content-Type": MEDIA_TYPE} if body is not None else None
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                data=body,
                headers=headers,
                auth=self._auth,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
            )
        except requests.RequestException as exc:
            raise error_for_exception(exc, operation, url) from None
        error = error_for_response(response, operation)
        if error is not None:
            raise error
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RetriableError(
                "2xx answer whose body is not JSON",
                status=response.status_code,
                operation=operation,
            ) from None

    def _pages(
        self, operation: str, path: str, params: Mapping[str, str]
    ) -> Iterator[dict[str, Any]]:
        """Every resource of a cursor-paged collection, following ``links.next``."""
        url: str | None = path
        query: Mapping[str, str] | None = params
        while url:
            page = self.request(operation, "GET", url, params=query)
            yield from page.get("data") or []
            url = (page.get("links") or {}).get("next")
            query = None  # links.next already carries the query and the cursor

    # -- accounts and lists --------------------------------------------------------

    def verify_key(self) -> KeyCheck:
        """Prove the key works. Keys without ``accounts:read`` pass through lists.

        401 raises ``AuthenticationError``; a key that can read neither accounts
        nor lists raises ``PermissionDeniedError``.
        """
        try:
            body = self.request(Operation.GET_ACCOUNTS, "GET", "/api/accounts")
        except PermissionDeniedError:
            self.request(Operation.GET_LISTS, "GET", "/api/lists", params={"fields[list]": "name"})
            return KeyCheck(account_id=None, via="lists")
        accounts = body.get("data") or []
        account_id = str(accounts[0]["id"]) if accounts else None
        return KeyCheck(account_id=account_id, via="accounts")

    def get_list(self, list_id: str) -> KlaviyoList:
        body = self.request(Operation.GET_LIST, "GET", f"/api/lists/{_segment(list_id)}")
        data = body["data"]
        return KlaviyoList(id=str(data["id"]), name=str((data.get("attributes") or {}).get("name")))

    def iter_list_members(self, list_id: str, page_size: int = MAX_PAGE_SIZE) -> Iterator[Profile]:
        params = {"fields[profile]": "email", "page[size]": str(_page_size(page_size))}
        path = f"/api/lists/{_segment(list_id)}/profiles"
        for resource in self._pages(Operation.GET_LIST_PROFILES, path, params):
            yield Profile.from_resource(resource)

    def add_profiles_to_list(self, list_id: str, profile_ids: Sequence[str]) -> None:
        self._list_relationship(Operation.ADD_PROFILES_TO_LIST, "POST", list_id, profile_ids)

    def remove_profiles_from_list(self, list_id: str, profile_ids: Sequence[str]) -> None:
        """Removes membership only: no unsubscribe, no suppression."""
        self._list_relationship(Operation.REMOVE_PROFILES_FROM_LIST, "DELETE", list_id, profile_ids)

    def _list_relationship(
        self, operation: str, method: str, list_id: str, profile_ids: Sequence[str]
    ) -> None:
        if not 0 < len(profile_ids) <= MAX_IDS_PER_LIST_CALL:
            raise ValueError(f"between 1 and {MAX_IDS_PER_LIST_CALL} profile ids per call")
        body = json.dumps({"data": [{"type": "profile", "id": pid} for pid in profile_ids]})
        path = f"/api/lists/{_segment(list_id)}/relationships/profiles"
        self.request(operation, method, path, body=body.encode())

    # -- profiles ------------------------------------------------------------------

    def iter_profiles_by_email(self, emails: Iterable[str]) -> Iterator[Profile]:
        """Profiles with these emails, 100 emails a query, every page followed."""
        chunk: list[str] = []
        for email in emails:
            chunk.append(email)
            if len(chunk) == MAX_EMAILS_PER_LOOKUP:
                yield from self._lookup(chunk)
                chunk = []
        if chunk:
            yield from self._lookup(chunk)

    def _lookup(self, emails: list[str]) -> Iterator[Profile]:
        quoted = ",".join(json.dumps(e) for e in emails)
        params = {
            "filter": f"any(email,[{quoted}])",
            "fields[profile]": "email",
            "page[size]": str(MAX_PAGE_SIZE),
        }
        for resource in self._pages(Operation.GET_PROFILES, "/api/profiles", params):
            yield Profile.from_resource(resource)

    # -- bulk import jobs ----------------------------------------------------------

    def create_bulk_import_job(
        self, profiles: Sequence[Mapping[str, Any]] | bytes, list_id: str
    ) -> ImportJob:
        """Start an import that upserts ``profiles`` and adds them to the list.

        ``profiles`` is a sequence of profile resources or, faster, the JSON
        array of them already encoded (the batch payload as stored).
        """
        profiles_json = profiles if isinstance(profiles, bytes) else json.dumps(profiles).encode()
        body = b"".join(
            (
                b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":',
                profiles_json,
                b'}},"relationships":{"lists":{"data":[{"type":"list","id":',
                json.dumps(list_id).encode(),
                b"}]}}}}",
            )
        )
        answer = self.request(
            Operation.BULK_IMPORT, "POST", "/api/profile-bulk-import-jobs", body=body
        )
        return ImportJob.from_resource(answer["data"])

    def get_bulk_import_job(self, job_id: str) -> ImportJob:
        path = f"/api/profile-bulk-import-jobs/{_segment(job_id)}"
        return ImportJob.from_resource(self.request(Operation.GET_IMPORT_JOB, "GET", path)["data"])

    def iter_import_errors(
        self, job_id: str, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[ImportErrorItem]:
        items, next_url = self.import_errors_page(job_id, None, page_size)
        yield from items
        while next_url:
            items, next_url = self.import_errors_page(job_id, next_url)
            yield from items

    def import_errors_page(
        self, job_id: str, next_url: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> tuple[list[ImportErrorItem], str | None]:
        """One page of a job's errors and the next page's URL (None after the last).

        For callers that may stop between pages and go on later from ``next_url``.
        """
        if next_url is None:
            path = f"/api/profile-bulk-import-jobs/{_segment(job_id)}/import-errors"
            params: Mapping[str, str] | None = {"page[size]": str(_page_size(page_size))}
            page = self.request(Operation.GET_IMPORT_ERRORS, "GET", path, params=params)
        else:
            page = self.request(Operation.GET_IMPORT_ERRORS, "GET", next_url)
        items = [ImportErrorItem.from_resource(r) for r in page.get("data") or []]
        return items, (page.get("links") or {}).get("next")

    def iter_job_profiles(self, job_id: str, page_size: int = MAX_PAGE_SIZE) -> Iterator[Profile]:
        """The profiles a job imported, with ids and emails (for later removals)."""
        path = f"/api/profile-bulk-import-jobs/{_segment(job_id)}/profiles"
        params = {"fields[profile]": "email", "page[size]": str(_page_size(page_size))}
        for resource in self._pages(Operation.GET_JOB_PROFILES, path, params):
            yield Profile.from_resource(resource)


_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def _segment(identifier: str) -> str:
    """A Klaviyo id as one path segment; anything else is refused before sending."""
    if not _SAFE_ID.match(identifier):
        raise ValueError(f"not a Klaviyo id: {identifier!r}")
    return quote(identifier, safe="")


def _page_size(size: int) -> int:
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValueError(f"page size must be 1..{MAX_PAGE_SIZE}")
    return size
