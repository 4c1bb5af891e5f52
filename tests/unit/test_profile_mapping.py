"""Records become compact Klaviyo profiles, bad rows get a named reason, repeats are spotted."""

from __future__ import annotations

import json
import random
from typing import Any

import idna
import pytest

from producer.dedup import EmailDeduplicator
from producer.profiles import (
    INVALID_EMAIL,
    INVALID_VALUE,
    KLAVIYO_ATTRIBUTES,
    MAX_PROFILE_BYTES,
    MISSING_EMAIL,
    PROFILE_TOO_LARGE,
    MappedProfile,
    ProfileMapper,
    Rejection,
)


def mapped(result: MappedProfile | Rejection) -> MappedProfile:
    assert isinstance(result, MappedProfile), result
    return result


def rejected(result: MappedProfile | Rejection) -> Rejection:
    assert isinstance(result, Rejection), result
    return result


def attributes_of(result: MappedProfile | Rejection) -> dict[str, Any]:
    profile = json.loads(mapped(result).profile_json)
    assert profile["type"] == "profile"
    assert set(profile) == {"type", "attributes"}
    attributes: dict[str, Any] = profile["attributes"]
    return attributes


# -- mapping -------------------------------------------------------------------------------


def test_email_is_normalised_and_sent_as_compact_json() -> None:
    result = mapped(ProfileMapper("Email").map(7, {"Email": "  Ann.Lee@Example.COM ", "x": "y"}))
    assert result.row == 7
    assert result.email == "ann.lee@example.com"
    assert result.profile_json == (
        b'{"type":"profile","attributes":{"email":"ann.lee@example.com"}}'
    )


def test_mapped_columns_go_to_attributes_or_properties() -> None:
    mapper = ProfileMapper(
        "email",
        {"First": "first_name", "Phone": "phone_number", "Plan": "plan", "Org": "organization"},
    )
    record = {
        "email": "a@x.co",
        "First": "Ann",
        "Phone": "+4712345678",
        "Plan": "pro",
        "Org": "Acme",
    }
    assert attributes_of(mapper.map(1, record)) == {
        "email": "a@x.co",
        "first_name": "Ann",
        "phone_number": "+4712345678",
        "organization": "Acme",
        "properties": {"plan": "pro"},
    }


def test_every_klaviyo_attribute_is_an_attribute() -> None:
    names = sorted(KLAVIYO_ATTRIBUTES - {"email", "location"})
    mapper = ProfileMapper("email", {f"col_{n}": n for n in names})
    record: dict[str, Any] = {"email": "a@x.co"} | {f"col_{n}": f"v-{n}" for n in names}
    attributes = attributes_of(mapper.map(1, record))
    assert "properties" not in attributes
    assert all(attributes[n] == f"v-{n}" for n in names)


def test_missing_none_and_blank_values_are_left_out() -> None:
    mapper = ProfileMapper("email", {"a": "first_name", "b": "last_name", "c": "plan", "d": "tier"})
    record = {"email": "a@x.co", "a": "", "b": None, "c": "   "}  # "d" is absent
    assert attributes_of(mapper.map(1, record)) == {"email": "a@x.co"}


def test_values_are_stripped_and_non_ascii_is_kept_as_utf8() -> None:
    mapper = ProfileMapper("email", {"n": "first_name", "c": "city"})
    result = mapped(mapper.map(1, {"email": "a@x.co", "n": "  José ", "c": ' "Oslo"\\ '}))
    assert "José".encode() in result.profile_json  # not \u00e9
    assert attributes_of(result) == {
        "email": "a@x.co",
        "first_name": "José",
        "properties": {"city": '"Oslo"\\'},
    }


def test_jsonl_values_keep_their_types_in_properties_and_become_text_in_attributes() -> None:
    mapper = ProfileMapper(
        "email", {"n": "score", "t": "tags", "o": "meta", "b": "vip", "id": "external_id"}
    )
    record = {"email": "a@x.co", "n": 4.5, "t": ["a"], "o": {"k": 1}, "b": False, "id": 1234}
    assert attributes_of(mapper.map(1, record)) == {
        "email": "a@x.co",
        "external_id": "1234",
        "properties": {"score": 4.5, "tags": ["a"], "meta": {"k": 1}, "vip": False},
    }


def test_location_takes_an_object() -> None:
    mapper = ProfileMapper("email", {"loc": "location"})
    location = {"city": "Oslo", "country": "Norway"}
    assert (
        attributes_of(mapper.map(1, {"email": "a@x.co", "loc": location}))["location"] == location
    )
    assert attributes_of(mapper.map(1, {"email": "a@x.co", "loc": {}})) == {"email": "a@x.co"}
    assert rejected(mapper.map(2, {"email": "a@x.co", "loc": "Oslo"})) == Rejection(
        2, "loc", "'loc' -> location must be an object", INVALID_VALUE
    )


def test_property_names_are_json_escaped() -> None:
    mapper = ProfileMapper("email", {"c": 'we"ird\\name'})
    assert attributes_of(mapper.map(1, {"email": "a@x.co", "c": "v"}))["properties"] == {
        'we"ird\\name': "v"
    }


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"e": "email"}, "cannot map to 'email'"),
        ({"p": "properties"}, "cannot map to 'properties'"),
        ({"a": "plan", "b": "plan"}, "'a' and 'b' both map to 'plan'"),
        ({"a": ""}, "empty name"),
    ],
)
def test_bad_property_mappings_are_refused(properties: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProfileMapper("email", properties)
    with pytest.raises(ValueError, match="email_field"):
        ProfileMapper("")


# -- rejections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "reason", "code"),
    [
        ({}, "email field 'Email' is missing", MISSING_EMAIL),
        ({"Email": None}, "email field 'Email' is missing", MISSING_EMAIL),
        ({"Email": ""}, "email field 'Email' is empty", MISSING_EMAIL),
        ({"Email": "   "}, "email field 'Email' is empty", MISSING_EMAIL),
        ({"Email": 42}, "email field 'Email' is not text: int", INVALID_EMAIL),
        ({"Email": "ann.example.com"}, "it needs exactly one '@'", INVALID_EMAIL),
        ({"Email": "a@b@example.com"}, "it needs exactly one '@'", INVALID_EMAIL),
        ({"Email": "ann lee@example.com"}, "it contains a space", INVALID_EMAIL),
        ({"Email": "ann@localhost"}, "the domain has no '.'", INVALID_EMAIL),
        ({"Email": "x" * 65 + "@example.com"}, "the part before '@' is over 64", INVALID_EMAIL),
        ({"Email": "a@" + "x" * 250 + ".com"}, "is 256 characters, over 254", INVALID_EMAIL),
        ({"Email": "ann..lee@example.com"}, "a character or dot out of place", INVALID_EMAIL),
    ],
)
def test_email_rejections_name_the_field(record: dict[str, Any], reason: str, code: str) -> None:
    result = rejected(ProfileMapper("Email").map(9, record))
    assert (result.row, result.field, result.code) == (9, "Email", code)
    assert reason in result.reason


VALID = [
    "a@b.co",
    "first.last@example.com",
    "o'brien@example.ie",
    "user+tag@sub.example.co.uk",
    "x_y-z=1!#$%&*/?^{|}~@example.org",
    "ann`x@example.com",  # a backquote is an atext character, and Klaviyo takes it
    "1234567890@123.com",
    "a" * 64 + "@example.com",
]
INVALID = [
    "plainaddress",
    "@example.com",
    "ann@",
    "ann@.com",
    "ann@example.",
    "ann@example.c",
    ".ann@example.com",
    "ann.@example.com",
    "ann@example..com",
    "Ann <ann@example.com>",
    "ann@example.com,bob@example.com",
    '"ann"@example.com',
    "ann@o'brien.ie",
    "ann@exa mple.com",
    "ann@exam\nple.com",
    "ann\x00@example.com",
    "ann@[127.0.0.1]",
    "ann\ud800@example.com",
    "ann;bob@example.com",
    "josé@example.de",  # Klaviyo accepts only ASCII before the '@'
    "ann@exa_mple.com",
    "ann@-example.com",
    "ann@example.1com",
]


@pytest.mark.parametrize("email", VALID)
def test_pragmatic_email_check_accepts(email: str) -> None:
    assert mapped(ProfileMapper("e").map(1, {"e": email})).email == email.lower()


@pytest.mark.parametrize(
    ("email", "sent"),
    [
        ("jose@exämple.de", "jose@xn--exmple-cua.de"),
        ("User@Bücher.DE", "user@xn--bcher-kva.de"),
        ("user@例え.jp", "user@xn--r8jz45g.jp"),
        ("user@例え。jp", "user@xn--r8jz45g.jp"),  # an ideographic full stop separates labels
        ("user@straße.de", "user@xn--strae-oqa.de"),  # IDNA 2008: ß is kept, not "ss"
    ],
)
def test_internationalised_domains_are_sent_in_ascii_form(email: str, sent: str) -> None:
    result = mapped(ProfileMapper("e").map(1, {"e": email}))
    assert result.email == sent
    assert attributes_of(result)["email"] == sent


@pytest.mark.parametrize("email", INVALID)
def test_pragmatic_email_check_refuses(email: str) -> None:
    assert rejected(ProfileMapper("e").map(1, {"e": email})).code in (INVALID_EMAIL, MISSING_EMAIL)


def test_reasons_do_not_echo_the_address() -> None:
    for email in INVALID:
        assert email.strip() not in rejected(ProfileMapper("e").map(1, {"e": email})).reason


def test_oversized_profile_is_rejected_naming_its_largest_field() -> None:
    mapper = ProfileMapper("email", {"notes": "notes", "n": "first_name"})
    record = {"email": "a@x.co", "notes": "x" * 123_000, "n": "Ann"}
    result = rejected(mapper.map(4, record))
    size = len(_reference("email", {"notes": "notes", "n": "first_name"}, record) or b"")
    assert size > 123_000
    reason = (
        f"profile is {size:,} bytes, over Klaviyo's 100 KB limit"
        " (largest field 'notes': 123,002 bytes)"
    )
    assert result == Rejection(4, "notes", reason, PROFILE_TOO_LARGE)


def test_profile_exactly_at_the_limit_passes() -> None:
    mapper = ProfileMapper("email", {"notes": "notes"})
    base = len(mapped(mapper.map(1, {"email": "a@x.co", "notes": "x"})).profile_json) - 1
    fits = mapped(mapper.map(1, {"email": "a@x.co", "notes": "x" * (MAX_PROFILE_BYTES - base)}))
    assert len(fits.profile_json) == MAX_PROFILE_BYTES
    over = {"email": "a@x.co", "notes": "x" * (MAX_PROFILE_BYTES - base + 1)}
    assert rejected(mapper.map(1, over)).code == PROFILE_TOO_LARGE


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "'v' cannot be sent as JSON: it holds NaN or Infinity"),
        ([1, float("inf")], "'v' cannot be sent as JSON: it holds NaN or Infinity"),
        ("bad \ud800 text", "'v' cannot be sent as JSON: it holds an unpaired surrogate"),
        ({1, 2}, "'v' cannot be sent as JSON: Object of type set is not JSON serializable"),
    ],
)
def test_values_json_cannot_carry_are_rejected(value: object, reason: str) -> None:
    result = rejected(ProfileMapper("email", {"v": "v"}).map(3, {"email": "a@x.co", "v": value}))
    assert (result.row, result.field, result.code) == (3, "v", INVALID_VALUE)
    assert result.reason.startswith(reason)


def test_attribute_of_the_wrong_type_is_rejected() -> None:
    mapper = ProfileMapper("email", {"n": "first_name"})
    assert rejected(mapper.map(1, {"email": "a@x.co", "n": ["Ann"]})) == Rejection(
        1, "n", "'n' -> first_name must be text, not list", INVALID_VALUE
    )


def _reference(email_field: str, mapping: dict[str, str], record: dict[str, Any]) -> bytes | None:
    """A slow, obvious version of the mapping, to compare the fast one against."""
    raw = record.get(email_field)
    if not isinstance(raw, str) or "@" not in raw.strip() or " " in raw.strip():
        return None
    local, _, domain = raw.strip().lower().rpartition("@")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode()
        except idna.IDNAError:
            return None
    attributes: dict[str, Any] = {"email": f"{local}@{domain}"}
    properties: dict[str, Any] = {}
    for column, target in mapping.items():
        value = record.get(column)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            continue
        if target in KLAVIYO_ATTRIBUTES:
            attributes[target] = value
        else:
            properties[target] = value
    if properties:
        attributes["properties"] = properties
    profile = {"type": "profile", "attributes": attributes}
    return json.dumps(profile, separators=(",", ":"), ensure_ascii=False).encode()


def test_random_records_match_a_reference_encoding() -> None:
    rng = random.Random(1234)
    alphabet = "abcXYZ019 ,;\"'\\\t\n\u00e9\u4e2d\U0001f600@._-"
    mapping = {"f": "first_name", "l": "last_name", "p": "plan", "q": 'quote"key', "n": "title"}

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))

    mapper = ProfileMapper("mail", mapping)
    checked = 0
    for row in range(2_000):
        local = "".join(rng.choice("abcdef0123._+") for _ in range(rng.randint(1, 10)))
        email = rng.choice([f" {local}@Example.com ", text(), f"{local}@x.io", ""])
        record: dict[str, Any] = {"mail": email}
        for column in mapping:
            if rng.random() < 0.8:
                record[column] = rng.choice([text(), None, "  "])
        result = mapper.map(row, record)
        expected = _reference("mail", mapping, record)
        if isinstance(result, MappedProfile):
            assert expected == result.profile_json
            assert json.loads(result.profile_json)["attributes"]["email"] == result.email
            checked += 1
        else:
            assert result.row == row
            assert result.field == "mail"
    assert checked > 500


# -- de-duplication ------------------------------------------------------------------------------


def test_deduplicator_answers_seen_before() -> None:
    seen = EmailDeduplicator()
    assert not seen.seen_before("a@x.co")
    assert seen.seen_before("a@x.co")
    assert not seen.seen_before("b@x.co")
    assert seen.seen_before("a@x.co")
    assert len(seen) == 2


def test_deduplicator_remembers_everything_across_growth() -> None:
    seen = EmailDeduplicator()
    emails = [f"user{i}@example.com" for i in range(50_000)]
    assert not any(seen.seen_before(e) for e in emails)
    assert all(seen.seen_before(e) for e in emails)
    assert len(seen) == len(emails)
    assert seen.memory_bytes <= 27 * len(emails)  # 8-byte slots, 30%..60% full


def test_deduplicator_can_be_sized_up_front() -> None:
    seen = EmailDeduplicator(expected=100_000)
    before = seen.memory_bytes
    for i in range(100_000):
        seen.seen_before(f"u{i}@x.co")
    assert seen.memory_bytes == before  # no growth needed
