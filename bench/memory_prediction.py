"""Memory prediction error over every configuration measured in the cache's studies.

relative error = (predicted − measured peak RSS) / measured, per backend: median of |error|, worst.

    .venv/bin/python bench/memory_prediction.py [--storage URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import optuna

from autotune.search.trials import records
from autotune.store.storage import default_storage


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=None)
    args = parser.parse_args()
    storage = args.storage or default_storage()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    errors: dict[str, list[tuple[float, str]]] = {}
    seen: set[tuple[str, str]] = set()
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for record in records(study):
            m = record.measurement
            if m is None or record.prediction is None or not m.peak_rss_bytes:
                continue
            key = (summary.study_name, record.key)
            if key in seen:
                continue
            seen.add(key)
            error = (record.prediction.memory_bytes - m.peak_rss_bytes) / m.peak_rss_bytes
            errors.setdefault(record.backend, []).append((error, f"{record.precision} {record.params}"))
    if not errors:
        print(f"no measured configurations in {storage}; run `autotune run ...` first")
        return 1
    print(f"{'backend':<12} {'configs':>7} {'median |err|':>12} {'worst err':>10}  worst configuration")
    for backend, values in sorted(errors.items()):
        worst = max(values, key=lambda v: abs(v[0]))
        median = statistics.median(abs(v[0]) for v in values)
        print(f"{backend:<12} {len(values):>7} {median:>11.1%} {worst[0]:>+10.1%}  {worst[1][:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
