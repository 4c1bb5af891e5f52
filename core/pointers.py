"""Klaviyo's JSON pointers into a bulk import body, read back as segment columns.

When Klaviyo fails a row of an import job it names the place at fault with a
JSON pointer (RFC 6901) into the body we sent, e.g.
``/data/attributes/profiles/data/3/attributes/email``. The index is the row's
place in one batch and the names are Klaviyo's, so to the person who wrote the
segment it says nothing; the column it came from does. This is the one place
that reads pointers back, shared by the workers (which record failed rows) and
anything else that reports them: the workers never import ``producer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["source_field"]

_PROFILES: Final = ("data", "attributes", "profiles", "data")
"""Where the profiles of a bulk import body are: the tokens before a row's index."""


def source_field(
    pointer: str | None, email_field: str, properties: Mapping[str, str]
) -> str | None:
    """The segment column a pointer into one of our profiles names.

    ``email_field`` and ``properties`` (source column -> Klaviyo name) are the
    export's, as the producer used them to build the profile. Returns:

    * the column, for a pointer to the email, to an attribute, to anything
      inside ``location`` or to a custom property that a column maps to;
    * ``None`` for no pointer, or one naming a whole profile (or its whole
      ``attributes``): no single column is at fault;
    * the pointer itself for anything else, so that nothing Klaviyo said is
      lost.
    """
    if not pointer:
        return None
    tokens = [_unescape(token) for token in pointer.split("/")[1:]]
    if (
        not pointer.startswith("/")
        or tuple(tokens[:4]) != _PROFILES
        or len(tokens) < 5
        or not tokens[4].isdigit()
    ):
        return pointer
    inside = tokens[5:]
    if not inside or inside == ["attributes"]:
        return None
    if inside[0] != "attributes":
        return pointer
    name, rest = inside[1], inside[2:]
    if name == "email":
        return email_field
    if name == "properties":
        if not rest:
            return None
        # A name holding "/" should come escaped (~1); taking the rest whole
        # also reads a pointer built without escaping.
        name = "/".join(rest)
    column_of = {target: column for column, target in properties.items()}
    return column_of.get(name, pointer)


def _unescape(token: str) -> str:
    # RFC 6901: "~1" is "/", "~0" is "~", in that order.
    return token.replace("~1", "/").replace("~0", "~")
