"""Keep emails out of logs that libraries write for us.

urllib3 logs each request line at DEBUG, query string included, and a lookup
by email carries the emails in ``filter=any(email,[…])``. The filter below
blanks every query string in urllib3's records; installing it is idempotent.
"""

from __future__ import annotations

import logging
import re

_QUERY = re.compile(r"\?[^\s\"']*")


class RedactQueryStrings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = _QUERY.sub("?<redacted>", str(record.msg))
        return True


def install() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, RedactQueryStrings) for f in logger.filters):
        logger.addFilter(RedactQueryStrings())
