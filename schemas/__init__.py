"""Contracts between the producer, the workers and upstream systems.

Everything that crosses a process boundary is described here: the Redis key
layout (``schemas.keys``) and the versioned JSON messages and records
(``schemas.contracts``). Producer and worker import nothing else of each other.
"""
