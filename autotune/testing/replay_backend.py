"""A backend that answers trials from measured llama-bench grids (threads × quantization).

It replays real timings without running a model, so search strategies and the confirmation logic
can be tested and benchmarked deterministically. A grid is a ``llama-bench -o json`` list: one row
per (model file, threads, test), where prompt tests have ``n_gen == 0`` and decode tests
``n_prompt == 0``. The model file name ends in ``-<QUANT>.gguf``.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, ClassVar

from autotune.hardware import Hardware
from autotune.measurement import Measurement, RunTimings, summarize
from autotune.model.source import ModelSource, cached_content_hash
from autotune.plugins.backend import Artifact, Availability, Backend, Categorical, Params, Prediction, SearchSpace
from autotune.workload import Workload

NOMINAL_BITS = {"F16": 16.0, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.69, "Q5_0": 5.5, "Q4_K_M": 4.89, "Q4_0": 4.5}
OVERHEAD_BYTES = 60 * 2**20
"""Interpreter + runtime buffers added to the file size as the replayed peak memory."""


def load_grid(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Index a llama-bench grid by (quantization, threads) → {"decode": row, "prompt": row, "size": bytes}."""
    table: dict[tuple[str, int], dict[str, Any]] = {}
    for row in json.loads(Path(path).read_text()):
        match = re.search(r"-([A-Za-z0-9_]+)\.gguf$", row["model_filename"])
        quant = (match.group(1) if match else row["model_filename"]).upper()
        entry = table.setdefault((quant, int(row["n_threads"])), {"size": int(row["model_size"])})
        entry["decode" if row["n_gen"] else "prompt"] = row
    return {key: value for key, value in table.items() if "decode" in value and "prompt" in value}


class ReplayBackend(Backend):
    """Replays a measured grid; ``noise`` (relative sd) resamples run-to-run variation like a real machine."""

    name: ClassVar[str] = "replay"
    source_formats: ClassVar[frozenset[str]] = frozenset({"gguf"})
    artifact_params: ClassVar[tuple[str, ...]] = ("quant",)
    measures_this_machine: ClassVar[bool] = False  # it answers from a measured table, not from running here

    def __init__(self, grid: Path, noise: float = 0.0) -> None:
        self.grid = load_grid(grid)
        self.noise = noise
        self.quants = sorted({q for q, _ in self.grid}, key=lambda q: -NOMINAL_BITS.get(q, 0))
        self.threads = sorted({t for _, t in self.grid})

    def availability(self) -> Availability:
        return Availability(available=True, version="replay")

    def inspect(self, path: Path) -> ModelSource:
        return ModelSource(path=path, format="gguf", sha256=cached_content_hash(path), architecture="llama",
                           precision=self.quants[0])

    def search_space(self, source: ModelSource, hardware: Hardware, workload: Workload) -> SearchSpace:
        return {"quant": Categorical(tuple(self.quants)), "n_threads": Categorical(tuple(self.threads))}

    def starting_points(self, source: ModelSource, hardware: Hardware, workload: Workload) -> list[Params]:
        """As the llama.cpp backend starts: the source's own type, then Q4_0, each on every physical core."""
        cores = min(self.threads, key=lambda t: abs(t - hardware.cpu.physical_cores))
        quants = [self.quants[0], *(["Q4_0"] if "Q4_0" in self.quants[1:] else [])]
        return [{"quant": quant, "n_threads": cores} for quant in quants]

    def untuned_params(self, source: ModelSource, hardware: Hardware, workload: Workload) -> Params:
        half = max(hardware.cpu.logical_cores // 2, 1)
        return {"quant": self.quants[0], "n_threads": min(self.threads, key=lambda t: abs(t - half))}

    def predict(self, source: ModelSource, params: Params, workload: Workload, hardware: Hardware) -> Prediction:
        return Prediction(memory_bytes=self.grid[(params["quant"], params["n_threads"])]["size"] + OVERHEAD_BYTES)

    def prepare(self, source: ModelSource, params: Params, workdir: Path) -> Artifact:
        entry = self.grid[(params["quant"], params["n_threads"])]
        path = workdir / f"replay-{params['quant']}.txt"
        path.write_text(params["quant"])
        parameters = int(entry["decode"]["model_n_params"])
        return Artifact(path=path, format="gguf", precision=params["quant"],
                        bits_per_weight=8 * entry["size"] / parameters, size_bytes=entry["size"])

    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        entry = self.grid[(params["quant"], params["n_threads"])]
        rng = random.Random()
        decode_samples = entry["decode"]["samples_ts"]
        prompt_tps = entry["prompt"]["avg_ts"]
        runs = []
        for index in range(workload.runs):
            tps = decode_samples[index % len(decode_samples)] * (rng.gauss(1, self.noise) if self.noise else 1)
            prefill_s = workload.prompt_tokens / prompt_tps
            runs.append(RunTimings(prompt_tokens=workload.prompt_tokens, prefill_s=prefill_s,
                                   ttft_s=prefill_s + 1 / tps, token_s=[1 / tps] * workload.gen_tokens))
        measurement = summarize(0.1, runs)
        measurement.peak_rss_bytes = entry["size"] + OVERHEAD_BYTES
        return measurement
