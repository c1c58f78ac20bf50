"""Profiles for the report's tests: one written by hand, one a real tuning run wrote, and either made hostile.

``report_profile`` is a llama.cpp profile with one trial of every kind, built without running anything.
``tuned_profile`` runs the tuner on the deterministic fake backend with quality scoring and confirmation rounds,
so the profile holds every kind of trial the report shows (measured within and over budget, skipped on a
prediction, screened out), quality intervals and the comparison with the untuned default. ``hostile_profile``
puts markup and script into every string a profile carries, for checking that the page shows them as text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotune.measurement import Measurement
from autotune.profile.schema import Confirmation, DeploymentProfile, Interval, Quality, Trial
from autotune.testing.profiles import sample_profile

HOSTILE = '<img src=x onerror="window.__pwned=1">"\'&</script><script>window.__pwned=2</script>'
"""Markup that runs script if a page pastes it unescaped (it sets ``window.__pwned``)."""


def _measured(decode_tps: float, p95_ms: float, peak_bytes: int, **context: Any) -> Measurement:
    return Measurement(load_s=0.3, ttft_ms=1000 / decode_tps * 3.1, itl_p50_ms=p95_ms * 0.9, itl_p95_ms=p95_ms,
                       decode_tps=decode_tps, prefill_tps=decode_tps * 8, peak_rss_bytes=peak_bytes, runs=3,
                       spread=0.03, context=context)


def _kl(value: float) -> Quality:
    return Quality(method="kl-divergence", reference="Q8_0", kl_divergence=Interval(value=value, low=value * 0.9,
                                                                                    high=value * 1.1))


def report_profile() -> DeploymentProfile:
    """A llama.cpp profile with one trial of each kind: chosen, on the front, within and over budget, skipped on a
    prediction, screened out, failed; figures measured quiet and busy; confirmation against both baselines."""
    base = sample_profile("llamacpp")
    params = dict(base.params)
    quiet = {"busy": {"others_share": 0.01, "steal_share": 0.0, "window_s": 4.2, "cores": 2, "busy_processes": [],
                      "disturbed": False}}
    busy = {"busy": {"others_share": 0.48, "steal_share": 0.02, "window_s": 4.0, "cores": 2,
                     "busy_processes": ["stress (pid 4242, 96% of a core)"], "disturbed": True}}
    chosen = _measured(112.5, 11.25, 300_000_000, **quiet)
    trials = [
        Trial(number=0, backend="llamacpp", configuration="Q8_0 t=2", params={**params, "quant": "Q8_0"},
              status="measured", feasible=True, on_front=True, precision="Q8_0", bits_per_weight=8.5,
              measured=_measured(71.25, 16.5, 420_000_000, **quiet), quality=_kl(0.0),
              violations={"memory": -0.79, "latency": -0.67}),
        Trial(number=1, backend="llamacpp", configuration="Q4_K_M t=2 fa kv=q8_0", params=params, status="measured",
              feasible=True, on_front=True, precision="Q4_K_M (20/22 tensors fell back to Q5_0)",
              bits_per_weight=4.9, measured=chosen, quality=_kl(0.0512), violations={"memory": -0.85, "latency": -0.78}),
        Trial(number=2, backend="llamacpp", configuration="Q4_0 t=1", params={**params, "quant": "Q4_0", "n_threads": 1},
              status="measured", feasible=False, precision="Q4_0", bits_per_weight=4.5,
              measured=_measured(18.75, 61.0, 280_000_000, **busy), quality=_kl(0.3125),
              violations={"memory": -0.86, "latency": 0.22}),
        Trial(number=3, backend="llamacpp", configuration="F16 t=2", params={**params, "quant": "F16"},
              status="predicted-infeasible", precision=None,
              reason="predicted memory 2.3 GiB exceeds the 1.9 GiB budget; not run"),
        Trial(number=4, backend="llamacpp", configuration="Q4_K_M t=1", params={**params, "n_threads": 1},
              status="screened-out", precision="Q4_K_M", bits_per_weight=4.9,
              measured=_measured(61.5, 18.0, 300_000_000), reason="screened out: 61.5 tok/s cannot beat #1's 112.5"),
        Trial(number=5, backend="llamacpp", configuration="Q2_K t=2", params={**params, "quant": "Q2_K"},
              status="failed", reason="measurement failed: killed by SIGILL"),
    ]
    confirmation = Confirmation(
        rounds=5, decode_tps=Interval(value=110.25, low=107.5, high=113.75),
        itl_p95_ms=Interval(value=11.5, low=11.0, high=12.25), verdict="winner",
        speedup_over_untuned=Interval(value=1.5625, low=1.5, high=1.625), untuned_params={"n_threads": 1},
        speedup_over_rule_of_thumb=Interval(value=1.0125, low=0.99, high=1.03),
        rule_of_thumb_params={"n_threads": 2}, versus_rule_of_thumb="tie",
        notes=["#0 tied with the winner inside the noise"])
    study = {**base.study, "trials_total": 6, "measured": 3, "predicted_infeasible": 1, "screened_out": 1,
             "failed": 1, "feasible": 2, "seconds": {"self-tests": 1.25, "quality": 12.5, "measurements": 40.0,
                                                     "confirmation": 61.0}}
    return base.model_copy(update={"measured": chosen, "quality": _kl(0.0512), "confirmation": confirmation,
                                   "trials": trials, "study": study,
                                   "exports": {"llama-server": "llama-server -m /models/x.gguf -t 2 -fa on"}})


def tuned_profile(model: Path) -> DeploymentProfile:
    """What ``autotune run`` writes after tuning ``model`` (a file starting with ``GGUF``) on the fake backend.

    Uses the ``AUTOTUNE_CACHE`` of the environment; takes about ten seconds.
    """
    # Imported here: the tuner brings Optuna, which checking a page of an existing profile does not need.
    from autotune.budget import Budget
    from autotune.options import TuneOptions
    from autotune.reporting import SilentReporter
    from autotune.testing.conformance import example_hardware
    from autotune.testing.fake_backend import FakeBackend
    from autotune.testing.inline_plugin import manager_with
    from autotune.tuner import Tuner
    from autotune.workload import Workload

    options = TuneOptions(trials=8, timeout_s=60, measure_quality=True, eval_tokens=64, confirm_rounds=5, seed=1)
    workload = Workload(prompt_tokens=16, gen_tokens=8, context=256, runs=3, depth=0)
    tuner = Tuner(model, Budget.parse("150MB", "30ms"), workload, options,
                  manager=manager_with(FakeBackend(noise=0.03), builtins=True), hardware=example_hardware(cores=4),
                  reporter=SilentReporter())
    return tuner.run().profile


def hostile_profile(profile: DeploymentProfile) -> DeploymentProfile:
    """``profile`` with ``HOSTILE`` in its model path, settings, trial texts, hardware, study and exports."""
    trials = [trial.model_copy(update={"configuration": f"{trial.configuration} {HOSTILE}", "reason": HOSTILE,
                                       "precision": f"{trial.precision} {HOSTILE}"}) for trial in profile.trials]
    return profile.model_copy(update={
        "model": profile.model.model_copy(update={"path": f"/models/{HOSTILE}.gguf"}),
        "params": {**profile.params, HOSTILE: HOSTILE},
        "trials": trials,
        "hardware": {**profile.hardware, "cpu": HOSTILE, HOSTILE: [HOSTILE]},
        "study": {**profile.study, "name": HOSTILE, "seconds": {HOSTILE: 1.0}},
        "exports": {**profile.exports, HOSTILE: HOSTILE},
        "objective": HOSTILE,
    })
