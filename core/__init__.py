"""klaviyo-export: export customer segments into Klaviyo lists."""

__version__ = "0.1.0"
