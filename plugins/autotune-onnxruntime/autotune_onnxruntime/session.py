"""Runtime settings: turning tuned parameters into onnxruntime-genai configuration and ONNX Runtime session options.

onnxruntime-genai 0.18 reads session options from ``genai_config.json``; ``og.Config.overlay``
merges a JSON fragment into the loaded configuration, so every measurement applies its own
settings without copying the model folder. The same fragment is what the ``genai-config``
exporter prints, so a deployment runs exactly what was measured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .params import OnnxRuntimeParams, onnxruntime_params
from .providers import BY_SHORT

Settings = OnnxRuntimeParams | Mapping[str, Any]
"""Parameters, validated (``OnnxRuntimeParams``) or as the tuner passes them (validated on use)."""


SPINNING = "session.intra_op.allow_spinning"
"""Whether idle intra-op threads busy-wait for work (ONNX Runtime's default) or sleep.

Spinning saves wake-up latency on an idle machine and wastes the cores on a shared one. SmolLM2
int4 with 2 threads on the 2-core development machine: 169 tok/s spinning vs 135 not spinning
when it was quiet; 36.1 vs 14.7 ms/token when other jobs kept it busy (load average 5).
"""


def session_options(params: Settings) -> dict[str, Any]:
    """The ``session_options`` entries ``params`` set, in ``genai_config.json`` spelling."""
    typed = onnxruntime_params(params)
    return {
        "intra_op_num_threads": typed.intra_op_num_threads,
        # The decoder graph runs sequentially; a second pool would only compete for the cores.
        "inter_op_num_threads": 1,
        "graph_optimization_level": typed.graph_optimization_level,
        SPINNING: "1" if typed.allow_spinning else "0",
    }


def genai_overlay(params: Settings) -> dict[str, Any]:
    """The fragment to merge into ``genai_config.json`` (``og.Config.overlay``) for ``params``."""
    return {"model": {"decoder": {"session_options": session_options(params)}}}


def config_fragment(params: Settings, context: int) -> dict[str, Any]:
    """What to merge into the model's ``genai_config.json``: session options, provider and context.

    What the ``genai-config`` export prints and the Foundry Local script writes into its folder.
    """
    fragment = genai_overlay(params)
    provider = genai_provider(params)
    fragment["model"]["decoder"]["session_options"]["provider_options"] = [{provider: {}}] if provider else []
    fragment["search"] = {"max_length": context}
    return fragment


def genai_provider(params: Settings) -> str | None:
    """onnxruntime-genai's provider name for ``params`` (``None``: the CPU, which needs no provider entry)."""
    short = onnxruntime_params(params).execution_provider
    if short == "cpu":
        return None
    return BY_SHORT[short].genai


def load_genai_model(model_dir: Path, params: Settings) -> Any:
    """An ``og.Model`` for the folder with ``params`` applied (providers cleared, then the chosen one)."""
    import onnxruntime_genai as og

    config = og.Config(str(model_dir))
    config.clear_providers()
    provider = genai_provider(params)
    if provider is not None:
        config.append_provider(provider)
    config.overlay(json.dumps(genai_overlay(params)))
    return og.Model(config)


def ort_session(model_file: Path, params: Settings) -> Any:
    """A plain ``onnxruntime.InferenceSession`` on ``model_file`` with the same threads, graph level and provider."""
    import onnxruntime as ort

    typed = onnxruntime_params(params)
    options = ort.SessionOptions()
    options.intra_op_num_threads = typed.intra_op_num_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, typed.graph_optimization_level)
    options.add_session_config_entry(SPINNING, "1" if typed.allow_spinning else "0")
    short = typed.execution_provider
    providers = ["CPUExecutionProvider"] if short == "cpu" else [BY_SHORT[short].ort, "CPUExecutionProvider"]
    return ort.InferenceSession(str(model_file), options, providers=providers)
