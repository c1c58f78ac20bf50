"""ONNX Runtime execution providers: which device providers are usable here, and their names in each API.

``onnxruntime.get_available_providers()`` lists what the installed build was compiled with, not
what works: a CUDA build on a machine without a driver lists CUDA and then silently runs on the
CPU. A provider counts as usable only when a one-node session really gets it. The CPU provider
is always there and is not reported as an accelerator.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class Provider:
    """One device execution provider under its three names."""

    short: str
    """The value of the ``execution_provider`` search parameter (lower case)."""
    ort: str
    """ONNX Runtime's provider name."""
    genai: str
    """onnxruntime-genai's name (``Config.append_provider``)."""


DEVICE_PROVIDERS = (
    Provider("cuda", "CUDAExecutionProvider", "cuda"),
    Provider("dml", "DmlExecutionProvider", "DML"),
    Provider("coreml", "CoreMLExecutionProvider", "CoreML"),
    Provider("openvino", "OpenVINOExecutionProvider", "OpenVINO"),
    Provider("qnn", "QNNExecutionProvider", "QNN"),
    Provider("webgpu", "WebGpuExecutionProvider", "WebGPU"),
    Provider("nvtensorrtrtx", "NvTensorRTRTXExecutionProvider", "NvTensorRtRtx"),
)
"""Device providers onnxruntime-genai can drive (ROCm, TensorRT and Azure it cannot)."""

BY_SHORT = {p.short: p for p in DEVICE_PROVIDERS}
BY_ORT = {p.ort: p for p in DEVICE_PROVIDERS}


def _probe_model() -> bytes:
    """A one-node float graph (Identity) to open a session with."""
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    result = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [value], [result])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def provider_works(ort_name: str) -> bool:
    """True when a session asked for ``ort_name`` really runs on it (no silent CPU fallback)."""
    import warnings

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a missing driver is the expected answer here, not worth a log line
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Specified provider ... is not in available provider names"
            session = ort.InferenceSession(_probe_model(), options, providers=[ort_name])
    except Exception:  # noqa: BLE001 - any failure to create the provider means "not usable"
        return False
    return session.get_providers()[:1] == [ort_name]


@lru_cache(maxsize=1)
def usable_providers() -> tuple[Provider, ...]:
    """Device providers that work here, in ``DEVICE_PROVIDERS`` order (empty on a CPU-only machine)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    compiled = set(ort.get_available_providers())
    return tuple(p for p in DEVICE_PROVIDERS if p.ort in compiled and provider_works(p.ort))


def genai_can_use(provider: Provider) -> bool:
    """Whether the installed onnxruntime-genai build can drive ``provider``.

    CUDA needs onnxruntime-genai's CUDA library (the ``onnxruntime-genai-cuda`` package); the
    other providers come from onnxruntime itself. (``onnxruntime_genai.is_cuda_available()`` is
    not used: in 0.18 it aborts the interpreter when it cannot load its runtime.)
    """
    if provider.short != "cuda":
        return True
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime_genai")
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = Path(next(iter(spec.submodule_search_locations)))
    return any(folder.glob("*onnxruntime-genai-cuda*"))
