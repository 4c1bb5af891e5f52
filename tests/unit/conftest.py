"""Fixtures for unit tests: the domain on fakeredis, with no broker and no worker.

A ``Context`` built here sends a run's parts to a ``RecordingDispatcher``
(``tests.support.domain``) instead of Celery chords, so a test sees what
would have been sent without needing a broker to publish it.
"""

from __future__ import annotations

from collections.abc import Callable

import fakeredis
import pytest

from core.context import Context
from core.secrets import SecretBox, generate_key
from core.settings import Settings
from tests.support.domain import RecordingDispatcher


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    """What the domain would have sent to the workers."""
    return RecordingDispatcher()


@pytest.fixture
def make_context(dispatcher: RecordingDispatcher) -> Callable[..., Context]:
    """``make_context(**env)``: a context whose parts go to ``dispatcher``, on its
    own fakeredis and secret key, with settings from ``env`` only (never the
    process environment, so a developer's variables cannot change a test)."""

    def make(**env: str) -> Context:
        box = SecretBox(generate_key())
        return Context.build(Settings.from_env(env), fakeredis.FakeRedis(), box, dispatcher)

    return make
