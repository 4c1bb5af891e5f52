"""Email addresses as Klaviyo accepts them, and why one is refused.

Emails are checked as Klaviyo checks them (the sandbox's ``EMAIL`` models its
validator): ASCII only. A domain written in another script (``bücher.de``,
``例え.jp``) is converted to its ASCII form (IDNA 2008 with UTS #46 mapping:
``xn--bcher-kva.de``), which is what is sent, de-duplicated and remembered; a
non-ASCII part before the ``@`` has no such form and is rejected.

Apart from the profile mapper (``producer.profiles``) because the rules are
their own concern: the mapper runs :data:`email_match` on every row, and the
rest only on the rare row that fails it.
"""

from __future__ import annotations

import re
from typing import Final

import idna

MAX_EMAIL_LENGTH: Final = 254
MAX_LOCAL_PART_LENGTH: Final = 64

# What the address check accepts, after stripping and lower-casing: what
# Klaviyo's validator accepts (the sandbox's EMAIL regex), with the domain in
# ASCII form: at most 254 characters; a local part of 1-64 characters (64 is
# RFC 5321's limit, which the sandbox does not check: the one place we are
# stricter) made of dot-separated runs of letters, digits and
# !#$%&'*+/=?^_`{|}~- ; a domain of two or more dot-separated labels of
# letters, digits and inner hyphens, up to 63 characters each, the last one 2+
# characters starting with a letter. So display names ("Ann <a@b.co>"), lists
# ("a@b.co,c@d.co"), quoted local parts, IP-literal domains, whitespace and
# control characters all fail. Dots may not lead, trail or repeat.
_ATEXT: Final = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
email_match: Final = re.compile(
    rf"(?=[^@]{{1,{MAX_LOCAL_PART_LENGTH}}}@){_ATEXT}+(?:\.{_ATEXT}+)*"
    rf"@(?:{_LABEL}\.)+[a-z][a-z0-9-]{{0,61}}[a-z0-9]"
).fullmatch
"""A match for a stripped, lower-cased, ASCII address Klaviyo accepts (length aside)."""
_LABEL_MATCH: Final = re.compile(_LABEL).fullmatch
_MAX_LABEL_LENGTH: Final = 63


def ascii_email(email: str) -> str | None:
    """``email`` with an internationalised domain in its ASCII (IDNA) form.

    ``None`` when there is no such form: not one ``@``, a local part outside
    ASCII (nothing converts it), or a domain IDNA refuses. ASCII labels are
    left as they are, for the address check to judge as Klaviyo does.
    """
    local, at, domain = email.rpartition("@")
    if not at or "@" in local or not local.isascii():
        return None
    if domain.isascii():
        return email
    try:
        labels = idna.uts46_remap(domain, std3_rules=False).split(".")
        ascii_labels = [
            label if label.isascii() else idna.alabel(label).decode() for label in labels
        ]
    except UnicodeError:  # idna.IDNAError and its kinds are UnicodeErrors
        return None
    return f"{local}@{'.'.join(ascii_labels)}"


def email_problem(field: str, email: str, sent: str | None) -> str:
    """Which rule the non-empty ``email`` (of column ``field``) breaks, for people.

    Only on the error path, and never echoing the address, which would put
    personal data in reports and logs. ``sent`` is the address with its domain
    in ASCII form, if it has one.
    """
    lead = f"email field {field!r} is not an email address"
    local, at, domain = (sent or email).rpartition("@")
    labels = domain.split(".")
    if not at or "@" in local:
        return f"{lead}: it needs exactly one '@'"
    if any(ch.isspace() for ch in email):
        return f"{lead}: it contains a space"
    if not local.isascii():
        return f"{lead} Klaviyo accepts: the part before '@' has a character outside ASCII"
    if sent is None and not domain.isascii():
        return f"{lead}: its domain is not a valid internationalised domain name"
    if len(sent or email) > MAX_EMAIL_LENGTH:
        form = " with its domain in ASCII form" if sent not in (None, email) else ""
        return (
            f"email field {field!r} is {len(sent or email)} characters{form},"
            f" over {MAX_EMAIL_LENGTH}"
        )
    if len(local) > MAX_LOCAL_PART_LENGTH:
        return f"{lead}: the part before '@' is over {MAX_LOCAL_PART_LENGTH} characters"
    if len(labels) < 2:
        return f"{lead}: the domain has no '.'"
    if any(len(label) > _MAX_LABEL_LENGTH for label in labels):
        return f"{lead}: a part of the domain is over {_MAX_LABEL_LENGTH} characters"
    if all(_LABEL_MATCH(label) for label in labels) and (
        len(labels[-1]) < 2 or not labels[-1][0].isalpha()
    ):
        return f"{lead}: the domain's last part needs 2 or more characters, a letter first"
    return f"{lead}: it has a character or dot out of place"
