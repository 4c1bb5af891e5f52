"""Every API operation, fuzzed from the served app's own OpenAPI document: no 5xx.

schemathesis reads ``/api/v1/openapi.json`` from a real ``klaviyo-export
serve`` (real Redis, the sandbox as Klaviyo, one real worker) and sends, as
an admin, requests that fit the document and requests that break it; every
answer must be something other than a server error (``not_a_server_error``).
A bounded, derandomized number of examples per operation keeps it to a
minute or two and the same from one run to the next.

Path ids are mostly unknown (404); for the operations that do not delete,
they are swapped for the ids of a real connection, export and run half of
the time, so that fuzzed bodies reach the domain too.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from core.context import Context
from core.settings import Settings
from demo.sample import write_sample
from frontdoors.http.app import create_app
from tests.integration.test_api_over_http import Served, cli_token, serving
from tests.support.domain import RecordingDispatcher
from tests.support.pipeline import LIST_ID, pipeline
from tests.support.services import redis_server


@dataclass
class Target:
    api: Served
    admin: str
    ids: dict[str, str]  # path parameter -> a real record's id


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("fuzz")
    segments = tmp / "segments"
    segments.mkdir()
    segment = segments / "s.csv"
    write_sample(segment, 200)
    env = {"KLAVIYO_EXPORT_SOURCE_ROOTS": str(segments)}
    with (
        redis_server() as url,
        pipeline(url, tmp, workers=1, concurrency=1, env=env) as kx,
        serving(kx.env, tmp) as api,
    ):
        connection_id = kx.add_connection()
        export_id = kx.add_export(connection_id, LIST_ID, "--segment", str(segment))
        _, run = kx.cli_json("run", export_id, "--source", str(segment), "--wait")
        ids = {"connection_id": connection_id, "export_id": export_id, "run_id": run["run_id"]}
        yield Target(api, cli_token(kx, "admin"), ids)


def _document() -> dict[str, Any]:
    """The app's OpenAPI document, built in this process (no Redis is asked for it):
    the served one is checked to be the same. schemathesis's lazy loader, which
    would read it from the server, does not run under this pytest."""
    ctx = Context.build(Settings.from_env({}), fakeredis.FakeRedis(), None, RecordingDispatcher())
    return create_app(ctx).openapi()


schema = schemathesis.openapi.from_dict(_document())
paced = schemathesis.openapi.from_dict(
    _document(), config=schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}})
)  # only the bounded fuzzing phase: the coverage phase's boundary cases are many


def test_the_fuzzed_document_is_the_served_one(target: Target) -> None:
    served = requests.get(f"{target.api.base_url}/api/v1/openapi.json", timeout=30).json()
    assert served == _document()


def _aim(case: Any, target: Target) -> None:
    """Real ids for half of the non-deleting cases."""
    if (
        case.method != "DELETE"
        and case.path_parameters
        and zlib.crc32(repr(case.body).encode()) % 2
    ):
        for name in case.path_parameters:
            if name in target.ids:
                case.path_parameters[name] = target.ids[name]


PACED = r"/connections$|/rotate-key$"
"""The operations that check a new key with Klaviyo: its ``/accounts`` endpoint allows
a few calls a minute, and the server keeps to that, so these get a few fuzzed
examples and no coverage phase (``paced``)."""
FUZZ = settings(
    deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


def _call(case: Any, target: Target) -> None:
    _aim(case, target)
    case.call_and_validate(
        base_url=target.api.base_url,
        headers={"Authorization": f"Bearer {target.admin}"},
        checks=[not_a_server_error],
        timeout=120,
    )


@schema.exclude(method="POST", path_regex=PACED).parametrize()
@settings(FUZZ, max_examples=25)
def test_no_operation_answers_a_server_error(case: Any, target: Target) -> None:
    _call(case, target)


@paced.include(method="POST", path_regex=PACED).parametrize()
@settings(FUZZ, max_examples=6)
def test_no_key_check_answers_a_server_error(case: Any, target: Target) -> None:
    _call(case, target)


def test_the_fuzzed_server_logged_no_internal_error(target: Target) -> None:
    """Runs after the fuzzing: nothing the server met was a bug (an internal error)."""
    log = Path(target.api.log).read_text()
    assert "internal error" not in log
    assert "Traceback" not in log
