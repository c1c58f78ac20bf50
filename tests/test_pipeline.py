"""The trial pipeline's cost before a full measurement: a backend's short first run only when the prediction
leaves its running time in doubt (``fits_comfortably``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autotune.errors import NothingFits
from autotune.hardware import Hardware
from autotune.model.source import ModelSource
from autotune.plugins.backend import Params, Prediction
from autotune.reporting import SilentReporter
from autotune.search.pipeline import SCREEN_GEN_TOKENS, fits_comfortably, full_measurement_tokens, screening_workload
from autotune.testing import FakeBackend, InlineBackends
from autotune.testing.tuning import tune_with_plugins
from autotune.workload import Workload

WORKLOAD = Workload(prompt_tokens=8, gen_tokens=4, context=64, runs=3, depth=0)


class Predicted(FakeBackend):
    """The fake backend measuring here, predicting a latency lower bound (the plain fake predicts none)."""

    def __init__(self, bound_ms: float, **settings: Any) -> None:
        super().__init__(measures_here=True, **settings)
        self.bound_ms = bound_ms

    def predict(self, source: ModelSource, params: Params, workload: Workload, hardware: Hardware) -> Prediction:
        return Prediction(memory_bytes=super().predict(source, params, workload, hardware).memory_bytes,
                          latency_lower_bound_ms=self.bound_ms)


def test_fitting_comfortably_needs_a_bound_well_within_the_budget_and_time_at_the_budgets_pace() -> None:
    default = Workload()  # a warm-up and 3 runs of 128 + 64 tokens, then the fill to 1,984 and 64 more
    assert full_measurement_tokens(default) == 4 * 192 + 1984 + 64
    assert fits_comfortably(Prediction(memory_bytes=1, latency_lower_bound_ms=6.0), 50, default, 300)
    assert not fits_comfortably(Prediction(memory_bytes=1, latency_lower_bound_ms=30.0), 50, default, 300)
    assert not fits_comfortably(Prediction(memory_bytes=1), 50, default, 300), "no bound: nothing is known"
    assert not fits_comfortably(Prediction(memory_bytes=1, latency_lower_bound_ms=6.0), 50, default, 60), \
        "2,816 tokens at 50 ms each need 141 s: a 60 s timeout leaves the time in doubt"


@pytest.mark.parametrize("bound_ms, short_run", [(2.0, False), (30.0, True)])
def test_a_backends_first_full_measurement_comes_without_a_short_run_when_the_prediction_fits_comfortably(
        model: Path, bound_ms: float, short_run: bool) -> None:
    from autotune.probe.machine import probe_here

    reporter = SilentReporter()
    tune_with_plugins(model, InlineBackends(Predicted(bound_ms, name="predicted")), reporter=reporter,
                      hardware=probe_here(measure_bandwidth=False), workload=WORKLOAD, trials=1, timeout_s=60,
                      backends=("predicted",))
    assert any(m.startswith("a short run of predicted") for m in reporter.messages) is short_run, reporter.messages


def test_a_backend_whose_unprobed_first_measurement_times_out_is_dropped(model: Path) -> None:
    # The short run was skipped on the prediction's word: a first full measurement that cannot finish shows the
    # backend far slower than its budget, and the next trials must not each spend the timeout again.
    from autotune.probe.machine import probe_here

    reporter = SilentReporter()
    slow = Predicted(2.0, name="slow", measure_s=30.0)
    with pytest.raises(NothingFits, match="slow"):  # nothing else to tune: nothing fits, naming why slow was dropped
        tune_with_plugins(model, InlineBackends(slow), reporter=reporter, hardware=probe_here(measure_bandwidth=False),
                          workload=WORKLOAD, trials=3, timeout_s=2, backends=("slow",), latency="40ms")
    dropped = [w for w in reporter.warnings if "'slow' dropped" in w]
    assert len(dropped) == 1 and "did not finish within --timeout 2s" in dropped[0], reporter.warnings
    assert sum(m.startswith("measuring slow") for m in reporter.messages) == 1


class Serving(Predicted):
    """The predicting fake as a server backend: it measures served workloads (several clients)."""

    serves = True


def test_a_served_workload_gets_no_single_stream_short_run(model: Path) -> None:
    # A served measurement is loads bounded in requests and seconds, without the deep-context run the short run's
    # arithmetic assumes (issue 19: it once dropped the llama-server backend for "decoding at depth 1984").
    from autotune.probe.machine import probe_here

    reporter = SilentReporter()
    tune_with_plugins(model, InlineBackends(Serving(30.0, name="serving")), reporter=reporter,
                      hardware=probe_here(measure_bandwidth=False), workload=WORKLOAD.model_copy(update={"concurrency": 2}),
                      trials=1, timeout_s=60, backends=("serving",))
    assert not any(m.startswith("a short run of serving") for m in reporter.messages), reporter.messages
    assert any(m.startswith("measuring serving") for m in reporter.messages), reporter.messages


def test_a_served_screen_generates_whole_answers_and_a_single_stream_a_short_one() -> None:
    # n-gram speculation pays over an answer's length: a served screen cut to 32 tokens ruled it out on copy-heavy
    # prompts where whole answers ran 1.5x faster with it.
    single = screening_workload(Workload(gen_tokens=128, depth=None))
    assert (single.runs, single.gen_tokens, single.depth) == (1, SCREEN_GEN_TOKENS, 0)
    served = screening_workload(Workload(gen_tokens=128, concurrency=4))
    assert (served.runs, served.gen_tokens, served.depth) == (1, 128, 0)
