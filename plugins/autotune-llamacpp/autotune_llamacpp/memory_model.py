"""Peak resident memory of a llama-cpp-python worker, predicted before anything is built or run.

peak = overhead + weights + KV cache + compute, each from what llama.cpp really allocates and
touches (only touched pages are resident):

- weights: the bytes of every tensor in the type it will really have (``tensor_plan``: mixes and
  row-size fallbacks applied). On x86 with AVX2 llama.cpp *repacks* Q4_0/Q4_K/Q2_K/IQ4_NL matrix
  weights into an interleaved copy; with mmap the file pages of those tensors stay mapped and
  resident as well, so they count twice (mmap off: once).
- KV cache: llama.cpp zeroes it at creation, so all of it is resident: n_layer × n_ctx ×
  n_head_kv × (head_dim_k × bytes(type_k) + head_dim_v × bytes(type_v)). llama-cpp-python keeps
  llama.cpp's default ``swa_full=True``, so sliding-window layers (Gemma 3) hold the full context
  too (measured: 36 MiB at 2048 tokens for Gemma 3 270M, exactly this formula).
- compute: the compute buffer is reserved for n_ubatch × vocabulary logits (514 MiB for Gemma!)
  but only the graph actually run touches it: activations of the largest micro-batch evaluated
  (T tokens) plus, without flash attention, its T × n_kv × n_head f32 attention scores; plus the
  one-row output buffer.
- overhead: the worker's interpreter with numpy, llama_cpp and autotune imported, llama.cpp's
  fixed buffers, and the vocabulary tables (≈180 bytes per token: Gemma's 262,144 tokens cost
  ≈45 MiB).

Calibration (peak RSS measured in autotune's worker, 2-core EPYC, llama-cpp-python 0.3.36;
"predicted" is this module with the constants below):

  model (tensor data MiB)        ctx  mmap  prompt/deep        measured  predicted
  Gemma 3 270M Q4_K_M (235.2)   2048  on    128/-               399.0     397.0
  Gemma 3 270M Q4_K_M           2048  off   128/-               386.4     384.3
  Gemma 3 270M Q4_K_M            512  on    128/-               370.1     370.0
  Gemma 3 270M Q4_K_M            512  off   128/-               357.6     357.3
  Gemma 3 270M Q4_K_M            512  off   16/-                350.0     353.0
  Gemma 3 270M Q4_K_M            512  off   448/-               367.2     371.5
  Gemma 3 270M Q4_K_M           2048  off   128/1984            415.8     413.2  (ubatch 512)
  Gemma 3 270M Q4_K_M           2048  off   128/1984            386.8     387.8  (ubatch 128)
  Gemma 3 270M Q4_K_M           2048  off   128/1984 FA         399.2     397.2
  Gemma 3 270M Q4_0 (224.0)     2048  on    128/-               428.1     427.0  (+53.5 repacked Q4_0)
  Gemma 3 270M Q4_0             2048  off   128/-               374.6     373.2
  Gemma 3 270M Q8_0 (271.8)     2048  on/off 128/-              422.2        -   (Q8_0 is not repacked)
  tiny h256 F16 vocab 512 (2.8)  128  off   16/-                 64.2      66.0
  tiny h256 F16 vocab 512        512  off   128/504              74.9      74.8
  tiny h256 F16 vocab 32000      128  off   16/-                103.4     102.2
  tiny h512 4 layers vocab 4096  512  on/off 128/504            114.9     117.4

The constants below are a least-squares fit of those points (all within ±3%).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import autotune
from autotune import Hardware, Workload

from .gguf_info import GgufInfo, tensor_bytes
from .runtime_params import KV_BYTES_PER_VALUE, effective
from .tensor_plan import TensorPlan, allows_quantization

MiB = 2**20

WORKER_BASELINE_BYTES = int(53.6 * MiB)
"""A worker with numpy, llama_cpp and autotune imported and no model (measured)."""

RUNTIME_FIXED_BYTES = int(9.1 * MiB)
"""llama.cpp's fixed allocations per loaded model and context (fit)."""

VOCAB_BYTES_PER_TOKEN = 178
"""llama.cpp's vocabulary tables and llama-cpp-python's candidate arrays, per token (fit: 182 with the output row)."""

ACTIVATION_FACTOR = 2.46
"""Live f32 activations per evaluated token, in units of (n_embd + n_ff + n_head × head_dim) floats (fit)."""

OUTPUT_ROW_BYTES_PER_TOKEN = 4
"""The output buffer keeps one f32 logits row."""

KV_PAD = 256
"""llama.cpp rounds n_ctx, and the attention window a micro-batch sees, up to multiples of 256 cells."""

GPU_RUNTIME_BYTES = 300 * MiB
"""Host memory of a CUDA/Metal runtime when layers are offloaded (a rough figure, not calibrated here)."""


def repacked_types(hardware: Hardware) -> frozenset[str]:
    """Tensor types llama.cpp's CPU backend repacks into an interleaved copy on this CPU.

    Measured on x86 with AVX2 (llama-cpp-python 0.3.36): Q4_0, Q4_K, Q2_K (and IQ4_NL per
    ggml's repack.cpp); Q8_0, Q5_0, Q6_K, Q5_K, Q3_K were not repacked. ARM support follows
    repack.cpp's conditions (NEON dot product / int8 matmul); it is not calibrated here.
    """
    features = set(hardware.cpu.features)
    arch = hardware.cpu.architecture.lower()
    if arch in ("x86_64", "amd64", "i686"):
        return frozenset({"Q4_0", "Q4_K", "Q2_K", "IQ4_NL"}) if "avx2" in features else frozenset()
    if arch in ("aarch64", "arm64"):
        types = {"Q4_0", "IQ4_NL"} if ({"dotprod", "asimddp", "i8mm"} & features) else set()
        if "i8mm" in features:
            types.add("Q4_K")
        return frozenset(types)
    return frozenset()


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak resident memory, by part."""

    weights: int
    kv_cache: int
    compute: int
    overhead: int

    @property
    def total(self) -> int:
        """Sum of the parts."""
        return self.weights + self.kv_cache + self.compute + self.overhead

    def breakdown(self) -> dict[str, int]:
        """The parts as a plain dict (``Prediction.breakdown``)."""
        return {"weights": self.weights, "kv_cache": self.kv_cache, "compute": self.compute, "overhead": self.overhead}


def _pad(cells: int) -> int:
    return -(-max(cells, 1) // KV_PAD) * KV_PAD


def context_cells(context: int) -> int:
    """KV cells llama.cpp allocates for ``n_ctx = context``: it rounds the context up to a multiple of 256."""
    return _pad(context)


def weight_bytes(info: GgufInfo, plan: TensorPlan, use_mmap: bool, repack: frozenset[str], gpu_layers: int) -> int:
    """Resident bytes of the weights: planned types, repacked copies under mmap, minus offloaded layers."""
    total = 0
    for tensor in info.tensors:
        type_name = plan.types[tensor.name]
        size = tensor_bytes(tensor.shape, type_name)
        if gpu_layers and _offloaded(tensor.name, gpu_layers, info.n_layer):
            continue
        total += size
        # The token embedding is read row by row (get_rows), so llama.cpp never repacks it.
        repacked = (type_name in repack and allows_quantization(tensor) and tensor.name != "token_embd.weight"
                    and len(tensor.shape) >= 2 and tensor.shape[1] % 8 == 0)
        if repacked and use_mmap:
            total += size
    return total


def _offloaded(name: str, gpu_layers: int, n_layer: int) -> bool:
    """Whether ``-ngl gpu_layers`` moves this tensor to the GPU (blocks from the last; output at n_layer + 1)."""
    if name.startswith("blk."):
        layer = int(name.split(".")[1])
        return layer >= n_layer - min(gpu_layers, n_layer)
    return name.startswith("output") and gpu_layers > n_layer


def kv_cache_bytes(info: GgufInfo, context: int, type_k: str, type_v: str, gpu_layers: int = 0) -> int:
    """Bytes of the KV cache on the host: every layer holds the full context (``swa_full``)."""
    return autotune.kv_cache_bytes(
        layers=info.n_layer - min(gpu_layers, info.n_layer), kv_heads=info.n_head_kv, head_dim=info.head_dim_k,
        context=context_cells(context), bytes_per_element=KV_BYTES_PER_VALUE[type_k],
        value_bytes_per_element=KV_BYTES_PER_VALUE[type_v], value_head_dim=info.head_dim_v)


def decode_read_bytes(info: GgufInfo, plan: TensorPlan) -> int:
    """Weight bytes every decode step reads at least once, in their planned types.

    Left out: the token embedding, of which a step looks up one row (unless there is no
    ``output.weight`` and it doubles as the output projection), and MoE expert tensors
    (``*_exps``), of which the router picks only some. A repacked copy replaces the original
    in the kernels, so each tensor counts once.
    """
    tied = not any(tensor.name == "output.weight" for tensor in info.tensors)
    return sum(tensor_bytes(tensor.shape, plan.types[tensor.name]) for tensor in info.tensors
               if "_exps" not in tensor.name and (tied or tensor.name != "token_embd.weight"))


def latency_lower_bound_ms(info: GgufInfo, plan: TensorPlan, params: Mapping[str, Any], workload: Workload,
                           hardware: Hardware) -> float | None:
    """The memory-bandwidth bound of one decode step on the CPU; None with layers offloaded to a GPU."""
    if effective(params, workload.context)["n_gpu_layers"]:
        return None  # the GPU's bandwidth is not what the probe measures
    return autotune.decode_latency_lower_bound_ms(decode_read_bytes(info, plan), hardware)


def largest_micro_batch(workload: Workload, n_ubatch: int) -> tuple[int, int]:
    """(tokens, visible KV cells) of the largest micro-batch the measurement evaluates."""
    longest = max(workload.prompt_tokens, workload.deep_start)
    tokens = min(n_ubatch, longest)
    return tokens, min(_pad(longest), context_cells(workload.context))


def compute_bytes(info: GgufInfo, tokens: int, kv_cells: int, flash_attn: bool) -> int:
    """Touched compute memory for a micro-batch of ``tokens`` tokens seeing ``kv_cells`` cells."""
    n_ff = info.per_layer_max("feed_forward_length", 4 * info.n_embd)
    width = info.n_embd + n_ff + info.n_head * info.head_dim_k
    activations = ACTIVATION_FACTOR * 4 * width * tokens
    scores = 0 if flash_attn else 4 * tokens * kv_cells * info.n_head
    output = OUTPUT_ROW_BYTES_PER_TOKEN * info.vocab_size
    return int(activations + scores + output)


def estimate(info: GgufInfo, plan: TensorPlan, params: Mapping[str, Any], workload: Workload,
             hardware: Hardware) -> MemoryEstimate:
    """Predicted peak resident memory of measuring ``params`` on ``workload`` (see the module doc)."""
    settings = effective(params, workload.context)
    gpu_layers = settings["n_gpu_layers"]
    tokens, kv_cells = largest_micro_batch(workload, settings["n_ubatch"])
    overhead = WORKER_BASELINE_BYTES + RUNTIME_FIXED_BYTES + VOCAB_BYTES_PER_TOKEN * info.vocab_size
    if gpu_layers:
        overhead += GPU_RUNTIME_BYTES
    return MemoryEstimate(
        weights=weight_bytes(info, plan, settings["use_mmap"], repacked_types(hardware), gpu_layers),
        kv_cache=kv_cache_bytes(info, workload.context, settings["type_k"], settings["type_v"], gpu_layers),
        compute=compute_bytes(info, tokens, kv_cells, settings["flash_attn"]),
        overhead=int(overhead),
    )
