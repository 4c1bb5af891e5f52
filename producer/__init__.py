"""Reads segments, checks and packs their rows into batches, and starts export runs."""
