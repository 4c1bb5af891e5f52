"""Fixed facts about the Klaviyo API that the client depends on.

``REVISION`` is pinned to ``2026-07-15``: it is the revision of the published
spec subset we build and validate against (``sandbox/klaviyo-openapi-subset.json``,
from klaviyo/openapi at f0a30ba), and Klaviyo supports each revision for two
years after release, so it stays valid until 2028-07-15. Moving to a newer
revision means re-checking the endpoints below against that revision's spec.
"""

from __future__ import annotations

from typing import Final

REVISION: Final = "2026-07-15"
DEFAULT_BASE_URL: Final = "https://a.klaviyo.com"
MEDIA_TYPE: Final = "application/vnd.api+json"

MAX_PROFILES_PER_IMPORT: Final = 10_000
MAX_IMPORT_BYTES: Final = 5 * 1000 * 1000
MAX_PROFILE_BYTES: Final = 100 * 1000
MAX_IDS_PER_LIST_CALL: Final = 1_000
MAX_PAGE_SIZE: Final = 100
MAX_EMAILS_PER_LOOKUP: Final = 100
"""``any(email,[…])`` answers at most a page of 100; we never ask for more."""


class Operation:
    """Klaviyo operationIds; rate limits are per account and per operation."""

    GET_ACCOUNTS: Final = "get_accounts"
    GET_LISTS: Final = "get_lists"
    GET_LIST: Final = "get_list"
    GET_LIST_PROFILES: Final = "get_profiles_for_list"
    ADD_PROFILES_TO_LIST: Final = "add_profiles_to_list"
    REMOVE_PROFILES_FROM_LIST: Final = "remove_profiles_from_list"
    GET_PROFILES: Final = "get_profiles"
    BULK_IMPORT: Final = "bulk_import_profiles"
    GET_IMPORT_JOB: Final = "get_bulk_import_profiles_job"
    GET_IMPORT_ERRORS: Final = "get_errors_for_bulk_import_profiles_job"
    GET_JOB_PROFILES: Final = "get_profiles_for_bulk_import_profiles_job"
    GET_JOB_PROFILE_IDS: Final = "get_profile_ids_for_bulk_import_profiles_job"


RATE_LIMITS: Final[dict[str, tuple[int, int]]] = {
    # operationId: (burst per second, steady per minute), from the spec's
    # x-klaviyo-ratelimit at revision 2026-07-15.
    Operation.GET_ACCOUNTS: (1, 15),
    Operation.GET_LISTS: (75, 750),
    Operation.GET_LIST: (75, 750),
    Operation.GET_LIST_PROFILES: (75, 750),
    Operation.ADD_PROFILES_TO_LIST: (10, 150),
    Operation.REMOVE_PROFILES_FROM_LIST: (10, 150),
    Operation.GET_PROFILES: (75, 750),
    Operation.BULK_IMPORT: (10, 150),
    Operation.GET_IMPORT_JOB: (10, 150),
    Operation.GET_IMPORT_ERRORS: (10, 150),
    Operation.GET_JOB_PROFILES: (10, 150),
    Operation.GET_JOB_PROFILE_IDS: (10, 150),
}
