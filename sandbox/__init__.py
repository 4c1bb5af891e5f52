"""A local Klaviyo for tests and demos: the endpoints klaviyo-export uses, over HTTP.

``SandboxServer(SandboxConfig(...))`` serves Klaviyo's accounts, lists, list
membership, profiles and bulk profile import endpoints with Klaviyo's auth,
``revision`` header, JSON:API documents and errors, per-account rate limits
read from Klaviyo's own OpenAPI file, asynchronous import jobs, and optional
injected faults - close enough that Klaviyo's official Python SDK parses every
answer. Options are documented in :mod:`sandbox.config`; the command line in
:mod:`sandbox.cli`; the ``/_sandbox/`` helper endpoints in :mod:`sandbox.admin`.
"""

from sandbox.config import SandboxConfig
from sandbox.server import SandboxServer

__all__ = ["SandboxConfig", "SandboxServer"]
