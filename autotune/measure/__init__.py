"""Measuring in isolation: ``worker`` (a fresh interpreter per measurement), ``trial`` (artifacts, running one
measurement), ``selftest`` (does a runtime really run here), ``quality`` and ``quality_eval`` (next-token
distributions against the reference variant)."""
