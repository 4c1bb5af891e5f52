"""Turn segment records into Klaviyo profile resources.

Every row is checked here, before anything is sent: a row Klaviyo would refuse
becomes a :class:`Rejection` that names the row, the field and the reason, so a
bad row is reported by us instead of failing inside an import job (or, for an
invalid JSON value, failing the whole batch).

Emails are checked as Klaviyo checks them (``producer.emails``), with an
internationalised domain sent in its ASCII form; repeated emails are spotted by
``producer.dedup``.

Control characters: a mapped value holding one (U+0000-U+0008, U+000B, U+000C,
U+000E-U+001F, U+007F-U+009F, at any depth of a JSON value) rejects the row as
:data:`INVALID_VALUE`, naming the column and the character; tab, line feed and
carriage return are ordinary text (a quoted CSV field may hold line breaks) and
are kept. Refused rather than stripped because no one types them: a NUL or an
escape character in a value means the export that wrote the segment is damaged
(binary data, a C string cut short, text decoded with the wrong encoding, which
is what C1 characters betray), so the value is not what the source meant, and
stripping would send it as if it were, without a word. A rejected row is listed
with its column, so the source can be fixed and the row sent in the next run.

The mapper runs once per row of segments with millions of rows, so the work per
row is kept to what the output needs: one dict lookup per mapped column, one
regex match, the JSON text joined from pre-encoded keys and C-escaped values,
one ``str.encode``, and no per-row dicts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from klaviyo_client.constants import MAX_PROFILE_BYTES as MAX_PROFILE_BYTES_KLAVIYO
from producer.emails import MAX_EMAIL_LENGTH, ascii_email, email_match, email_problem

KLAVIYO_ATTRIBUTES: Final = frozenset(
    {
        "email",
        "phone_number",
        "external_id",
        "first_name",
        "last_name",
        "organization",
        "locale",
        "title",
        "image",
        "location",
    }
)
"""Profile attributes Klaviyo knows; any other target name goes under ``properties``."""

MAX_PROFILE_BYTES: Final = MAX_PROFILE_BYTES_KLAVIYO
"""Klaviyo's per-profile limit on bulk import (100 KB, read as decimal: the safe side)."""

# The control characters a value may not hold (see the module docstring):
# C0 but tab, LF and CR; DEL; C1.
_CONTROL_SEARCH: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]").search

# One shared C encoder: json.dumps with arguments would build a new one per call.
# allow_nan=False because NaN/Infinity are not JSON and would fail the batch.
_ENCODE: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
).encode
_ESCAPE: Final = json.encoder.encode_basestring  # C: '"' + escaped text + '"'


class MappedProfile(NamedTuple):
    """A checked profile: ``profile_json`` is the compact JSON resource, ready to batch."""

    row: int
    email: str
    """Stripped and lower-cased; this is also the value sent as ``attributes.email``."""
    profile_json: bytes


# NamedTuple's own __new__ is a Python function (~0.2 us a call); building the
# tuple directly skips it on the hot path.
_new_tuple: Final = tuple.__new__


MISSING_EMAIL: Final = "missing_email"
INVALID_EMAIL: Final = "invalid_email"
INVALID_VALUE: Final = "invalid_value"
PROFILE_TOO_LARGE: Final = "profile_too_large"


class Rejection(NamedTuple):
    """A row that will not be sent: the source field at fault and why.

    ``reason`` is for people; ``code`` is stable, for counting rejections by
    kind: :data:`MISSING_EMAIL` (absent, null or blank), :data:`INVALID_EMAIL`,
    :data:`INVALID_VALUE` (a mapped value of the wrong type, or not JSON) or
    :data:`PROFILE_TOO_LARGE`.
    """

    row: int
    field: str
    reason: str
    code: str


class ProfileMapper:
    """Maps source records to Klaviyo profiles.

    ``properties`` maps a source column to a Klaviyo name. A name in
    :data:`KLAVIYO_ATTRIBUTES` becomes a profile attribute, any other name a
    custom property. Values are stripped when they are text. Missing, ``None``
    and empty values are left out, because Klaviyo ignores nulls on import
    (they clear nothing), so sending them would only cost bytes. A mapped column
    missing from a record is not an error. Attributes other than ``location``
    take text, so numbers are turned into text; an object there is refused.
    ``location`` takes an object. Custom properties pass through as given.
    """

    def __init__(self, email_field: str, properties: Mapping[str, str] | None = None) -> None:
        if not email_field:
            raise ValueError("email_field must name the column that holds the email")
        self.email_field = email_field
        self._missing = f"email field {email_field!r} is missing"
        self._empty = f"email field {email_field!r} is empty"
        # Each column's JSON key is encoded once here; map() only joins pieces.
        attributes: list[tuple[str, str, str]] = []
        self._location: tuple[str, str] | None = None
        custom: list[tuple[str, str, str]] = []
        owner: dict[str, str] = {}
        for column, target in (properties or {}).items():
            if not column or not target:
                raise ValueError(f"properties: empty name in mapping {column!r} -> {target!r}")
            if target in ("email", "properties"):
                raise ValueError(f"properties: {column!r} cannot map to {target!r}, it is reserved")
            if target in owner:
                raise ValueError(
                    f"properties: {owner[target]!r} and {column!r} both map to {target!r}"
                )
            owner[target] = column
            key = _ENCODE(target) + ":"
            if target == "location":
                self._location = (column, "," + key)
            elif target in KLAVIYO_ATTRIBUTES:
                attributes.append((column, target, "," + key))
            else:
                custom.append((column, ',"properties":{' + key, "," + key))
        self._attributes = tuple(attributes)
        self._custom = tuple(custom)

    def map(self, row: int, record: Mapping[str, Any]) -> MappedProfile | Rejection:
        """Check one record and encode its profile, or say why it cannot be sent."""
        raw = record.get(self.email_field)
        if type(raw) is not str:
            return self._reject_email_value(row, raw)
        email = raw.strip().lower()
        if len(email) > MAX_EMAIL_LENGTH or email_match(email) is None:
            sent = ascii_email(email)  # the rare path: an IDN domain, or a bad address
            if sent is None or len(sent) > MAX_EMAIL_LENGTH or email_match(sent) is None:
                return self._reject_email_text(row, email, sent)
            email = sent
        # The JSON is assembled from pieces rather than by encoding a dict: about
        # twice as fast. A checked email holds no quote, backslash or control
        # character, so it needs no escaping; other text goes through the C
        # string escaper, anything else through the shared encoder. Text is
        # searched for control characters only when str.isprintable (C, and
        # true for almost every value) says it holds something unusual.
        try:
            parts = ['{"type":"profile","attributes":{"email":"', email, '"']
            add = parts.append
            for column, target, key in self._attributes:
                value = record.get(column)
                if value is None:
                    continue
                if type(value) is str:
                    value = value.strip()
                    if not value:
                        continue
                    if not value.isprintable() and _CONTROL_SEARCH(value) is not None:
                        return _reject_control(row, column, value)
                    add(key)
                    add(_ESCAPE(value))
                elif type(value) in (int, float):
                    add(key)
                    add(_ESCAPE(str(value)))
                else:
                    kind = type(value).__name__
                    reason = f"{column!r} -> {target} must be text, not {kind}"
                    return Rejection(row, column, reason, INVALID_VALUE)
            if self._location is not None:
                column, key = self._location
                value = record.get(column)
                if type(value) is dict:
                    if value:
                        if _first_control(value) is not None:
                            return _reject_control(row, column, value)
                        add(key)
                        add(_ENCODE(value))
                elif value is not None and value != "":
                    reason = f"{column!r} -> location must be an object"
                    return Rejection(row, column, reason, INVALID_VALUE)
            opened = False
            for column, first_key, key in self._custom:
                value = record.get(column)
                if value is None:
                    continue
                if type(value) is str:
                    value = value.strip()
                    if not value:
                        continue
                    if not value.isprintable() and _CONTROL_SEARCH(value) is not None:
                        return _reject_control(row, column, value)
                    encoded_value = _ESCAPE(value)
                else:
                    if type(value) in (dict, list) and _first_control(value) is not None:
                        return _reject_control(row, column, value)
                    encoded_value = _ENCODE(value)
                add(key if opened else first_key)
                add(encoded_value)
                opened = True
            add("}}}" if opened else "}}")
            encoded = "".join(parts).encode()
        except (ValueError, TypeError) as exc:  # NaN/inf, odd types, lone surrogates
            return self._reject_unencodable(row, record, exc)
        if len(encoded) > MAX_PROFILE_BYTES:
            return self._reject_oversized(row, record, len(encoded))
        return _new_tuple(MappedProfile, (row, email, encoded))

    def _columns(self) -> list[str]:
        columns = [self.email_field]
        columns += (spec[0] for spec in self._attributes)
        if self._location is not None:
            columns.append(self._location[0])
        columns += (spec[0] for spec in self._custom)
        return columns

    def _reject_email_value(self, row: int, raw: object) -> Rejection:
        if raw is None:
            return Rejection(row, self.email_field, self._missing, MISSING_EMAIL)
        kind = type(raw).__name__
        reason = f"email field {self.email_field!r} is not text: {kind}"
        return Rejection(row, self.email_field, reason, INVALID_EMAIL)

    def _reject_email_text(self, row: int, email: str, sent: str | None) -> Rejection:
        if not email:
            return Rejection(row, self.email_field, self._empty, MISSING_EMAIL)
        reason = email_problem(self.email_field, email, sent)
        return Rejection(row, self.email_field, reason, INVALID_EMAIL)

    def _reject_unencodable(self, row: int, record: Mapping[str, Any], exc: Exception) -> Rejection:
        field = self.email_field
        for column in self._columns():
            try:
                _ENCODE(record.get(column)).encode()
            except (ValueError, TypeError) as found:
                field, exc = column, found
                break
        if isinstance(exc, UnicodeEncodeError):
            why = "it holds an unpaired surrogate (a lone \\uD800-\\uDFFF escape), not UTF-8"
        elif isinstance(exc, ValueError):
            why = "it holds NaN or Infinity, which JSON cannot carry"
        else:
            why = str(exc)
        return Rejection(row, field, f"{field!r} cannot be sent as JSON: {why}", INVALID_VALUE)

    def _reject_oversized(self, row: int, record: Mapping[str, Any], size: int) -> Rejection:
        sizes = {c: len(_ENCODE(record.get(c)).encode()) for c in self._columns()}
        largest = max(sizes, key=sizes.__getitem__)
        return Rejection(
            row,
            largest,
            f"profile is {size:,} bytes, over Klaviyo's 100 KB limit"
            f" (largest field {largest!r}: {sizes[largest]:,} bytes)",
            PROFILE_TOO_LARGE,
        )


def _first_control(value: object) -> str | None:
    """The first refused control character in a JSON value (keys too), if any."""
    if type(value) is str:
        found = _CONTROL_SEARCH(value)
        return found.group() if found is not None else None
    if type(value) is dict:
        items: list[object] = [*value.keys(), *value.values()]
    elif type(value) is list:
        items = value
    else:
        return None
    for item in items:
        found_in = _first_control(item)
        if found_in is not None:
            return found_in
    return None


def _reject_control(row: int, column: str, value: object) -> Rejection:
    char = _first_control(value) or "\x00"
    return Rejection(
        row,
        column,
        f"{column!r} holds a control character (U+{ord(char):04X}); control characters"
        " other than tab and line breaks are refused",
        INVALID_VALUE,
    )
