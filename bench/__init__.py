"""End-to-end benchmark of the export pipeline (``python -m bench.run --help``)."""
