"""A deterministic fake backend: memory and latency are functions of its parameters.

It lets the search, budgets, confirmation and export logic be tested without any runtime.
Its "model" is any file starting with the GGUF magic; its artifacts are small text files.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from autotune.errors import AutotuneError
from autotune.hardware import Hardware
from autotune.measurement import Measurement, RunTimings, summarize
from autotune.model.source import ModelSource, cached_content_hash
from autotune.plugins.backend import (
    Artifact,
    Availability,
    Backend,
    Categorical,
    IntRange,
    Params,
    Prediction,
    SearchSpace,
)
from autotune.workload import Workload

BITS = {"f16": 16.0, "q8_0": 8.5, "q5_1": 6.0, "q4_0": 4.5}


class FakeBackend(Backend):
    """A backend whose figures are formulas.

    - memory = parameters × bits / 8 + 2 MiB per 1k context + 50 MiB overhead (+ ``extra_memory``)
    - decode latency per token = ``base_ms`` × bits / 16 × (1 + 1/threads), scaled by ``speed``
      per quantization type when given, with optional multiplicative ``noise`` (relative sd)
    - ``crash_on`` / ``hang_on``: parameter values that make ``measure`` crash or hang
    - ``predict_error``: relative error added to predictions (to test pruning tolerance)
    - ``measure_s``: wall time a measurement takes (to test workers measuring at the same time)
    - ``version``: the runtime version it reports (to test stale stored figures)
    - ``measures_here``: its figures count as this machine's (``measures_this_machine``), so its measurements
      take the host's measurement lock and record how busy the machine was (``autotune.measure.busy``)
    """

    name: ClassVar[str] = "fake"
    source_formats: ClassVar[frozenset[str]] = frozenset({"gguf"})
    artifact_params: ClassVar[tuple[str, ...]] = ("quant",)
    measures_this_machine: ClassVar[bool] = False  # its figures are formulas, not from running here

    def __init__(
        self,
        *,
        parameters: int = 100_000_000,
        max_threads: int = 4,
        base_ms: float = 20.0,
        speed: dict[str, float] | None = None,
        noise: float = 0.0,
        crash_on: dict[str, Any] | None = None,
        hang_on: dict[str, Any] | None = None,
        extra_memory: int = 0,
        predict_error: float = 0.0,
        name: str | None = None,
        measure_s: float = 0.0,
        version: str = "1.0",
        measures_here: bool = False,
    ) -> None:
        if measures_here:
            self.measures_this_machine = True  # type: ignore[misc]
        self.measure_s = measure_s
        self.runtime_version = version
        self.parameters = parameters
        self.max_threads = max_threads
        self.base_ms = base_ms
        self.speed = speed or {}
        self.noise = noise
        self.crash_on = crash_on or {}
        self.hang_on = hang_on or {}
        self.extra_memory = extra_memory
        self.predict_error = predict_error
        if name:
            self.name = name  # type: ignore[misc]

    def availability(self) -> Availability:
        return Availability(available=True, version=self.runtime_version)

    def inspect(self, path: Path) -> ModelSource:
        return ModelSource(path=path, format="gguf", sha256=cached_content_hash(path), architecture="fake",
                           parameters=self.parameters, precision="f16")

    def search_space(self, source: ModelSource, hardware: Hardware, workload: Workload) -> SearchSpace:
        return {"quant": Categorical(tuple(BITS)), "threads": IntRange(1, self.max_threads)}

    def starting_points(self, source: ModelSource, hardware: Hardware, workload: Workload) -> list[Params]:
        return [{"quant": "f16", "threads": self.max_threads}]

    def untuned_params(self, source: ModelSource, hardware: Hardware, workload: Workload) -> Params:
        return {"quant": "f16", "threads": max(1, self.max_threads // 2)}

    def memory_bytes(self, params: Params, workload: Workload) -> int:
        """The memory formula (measured value; predictions add ``predict_error``)."""
        weights = self.parameters * BITS[params["quant"]] / 8
        return int(weights + 2 * 2**20 * workload.context / 1024 + 50 * 2**20 + self.extra_memory)

    def token_ms(self, params: Params) -> float:
        """The noiseless decode latency formula."""
        bits = BITS[params["quant"]]
        return float(self.base_ms * bits / 16 * (1 + 1 / params["threads"]) * self.speed.get(params["quant"], 1.0))

    def predict(self, source: ModelSource, params: Params, workload: Workload, hardware: Hardware) -> Prediction:
        return Prediction(memory_bytes=int(self.memory_bytes(params, workload) * (1 + self.predict_error)))

    def prepare(self, source: ModelSource, params: Params, workdir: Path) -> Artifact:
        path = workdir / f"model-{params['quant']}.fake"
        path.write_text(json.dumps({"quant": params["quant"], "source": source.sha256}))
        size = int(self.parameters * BITS[params["quant"]] / 8)
        return Artifact(path=path, format="gguf", precision=params["quant"],
                        bits_per_weight=BITS[params["quant"]], size_bytes=size)

    def _matches(self, rule: dict[str, Any], params: Params) -> bool:
        return bool(rule) and all(params.get(k) == v for k, v in rule.items())

    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        if not artifact.path.exists():
            raise AutotuneError(f"artifact missing: {artifact.path}")
        if self._matches(self.crash_on, params):
            import os

            os.abort()  # a real crash: the worker dies without reporting
        if self._matches(self.hang_on, params):
            time.sleep(3600)
        time.sleep(self.measure_s)
        rng = random.Random()
        def run_factor() -> float:
            return max(0.2, rng.gauss(1.0, self.noise)) if self.noise else 1.0
        token_s = self.token_ms(params) / 1000
        runs = []
        for _ in range(workload.runs):
            factor = run_factor()  # run-to-run noise dominates within-run noise, as on real machines
            runs.append(RunTimings(
                prompt_tokens=workload.prompt_tokens,
                prefill_s=token_s * workload.prompt_tokens / 8 * factor,
                ttft_s=token_s * (workload.prompt_tokens / 8 + 1) * factor,
                token_s=[token_s * factor * (1.0 + 0.02 * (i % 5 == 4)) for i in range(workload.gen_tokens)],
            ))
        deep = None
        if workload.deep_start > 0:
            slow = 1 + workload.deep_start / workload.context * 0.2
            deep = RunTimings(prompt_tokens=workload.deep_start, prefill_s=1.0, ttft_s=1.0,
                              token_s=[token_s * slow] * workload.gen_tokens)
        measurement = summarize(0.01, runs, deep, workload.deep_start if deep else None)
        measurement.peak_rss_bytes = self.memory_bytes(params, workload)
        return measurement

    def tokenize(self, source: ModelSource, text: str) -> list[int]:
        return [b % 64 for b in text.encode()]

    def logprobs(self, artifact: Artifact, params: Params, token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
        """Reference logits depend on the previous token; lower precision adds seeded noise."""
        vocab = 64
        base = np.random.default_rng(0).normal(size=(vocab, vocab)) * 3
        scale = (16 - BITS[params["quant"]]) / 16 * 0.5
        noise = np.random.default_rng(1).normal(size=(vocab, vocab)) * scale
        for start in range(0, len(token_ids) - 1, chunk_tokens):
            chunk = token_ids[start:start + chunk_tokens]
            if len(chunk) < 2:
                break
            logits = base[chunk[:-1]] + noise[chunk[:-1]]
            yield logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
