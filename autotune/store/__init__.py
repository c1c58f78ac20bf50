"""What autotune keeps: ``cache`` (local files: probe results, artifacts), ``storage`` (database URLs and
errors), ``measurements`` (every figure under the key that determines it) and ``view`` (the study as a view of
the store: seeding, claims, warm start)."""
