"""The embedded default: its own Redis, workers and sandbox, a sample segment, the demo flow.

For ``klaviyo-export demo``, the tests and the benchmark; not in the production image.
"""
