"""Subcommands of ``klaviyo-export``; each module has ``register(subparsers)``."""
