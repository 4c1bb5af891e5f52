"""API keys are stored encrypted; this is the only place that sees them in clear.

Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) gives
authenticated encryption with a key we only have to keep, not design. The key
comes from ``KLAVIYO_EXPORT_SECRET_KEY`` (make one with
``klaviyo-export secret-key``). Nothing here logs, and decryption errors say
which record failed, never what it held.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from core.errors import ConfigurationError, SecretError


def generate_key() -> str:
    return Fernet.generate_key().decode()


class SecretBox:
    """Encrypts and decrypts short secrets with one Fernet key."""

    __slots__ = ("_fernet",)

    def __init__(self, key: str | None) -> None:
        if not key:
            raise ConfigurationError(
                "KLAVIYO_EXPORT_SECRET_KEY is not set: it encrypts API keys at rest. "
                "Create one with `klaviyo-export secret-key` and keep it secret."
            )
        try:
            self._fernet = Fernet(key.encode())
        except (ValueError, TypeError):
            raise ConfigurationError(
                "KLAVIYO_EXPORT_SECRET_KEY is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes; see `klaviyo-export secret-key`)"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(<redacted>)"

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str, what: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretError(
                f"cannot decrypt the API key of {what}: KLAVIYO_EXPORT_SECRET_KEY "
                "differs from the key it was stored with"
            ) from None
