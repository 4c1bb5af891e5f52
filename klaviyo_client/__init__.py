"""A small typed client for the Klaviyo endpoints that exporting to lists needs."""

from klaviyo_client import logs
from klaviyo_client.client import ClientSettings, KlaviyoClient, process_session
from klaviyo_client.constants import RATE_LIMITS, REVISION, Operation
from klaviyo_client.errors import (
    AuthenticationError,
    BadRequestError,
    ErrorDetail,
    FatalError,
    KlaviyoError,
    NotFoundError,
    PermissionDeniedError,
    RetriableError,
    ThrottledError,
)
from klaviyo_client.models import ImportErrorItem, ImportJob, KeyCheck, KlaviyoList, Profile

logs.install()

__all__ = [
    "RATE_LIMITS",
    "REVISION",
    "AuthenticationError",
    "BadRequestError",
    "ClientSettings",
    "ErrorDetail",
    "FatalError",
    "ImportErrorItem",
    "ImportJob",
    "KeyCheck",
    "KlaviyoClient",
    "KlaviyoError",
    "KlaviyoList",
    "NotFoundError",
    "Operation",
    "PermissionDeniedError",
    "Profile",
    "RetriableError",
    "ThrottledError",
    "process_session",
]
