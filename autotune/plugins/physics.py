"""Memory and latency figures that every runtime shares because the physics does.

Backends add their own terms through the arguments: how their runtime rounds the context, which
layers hold a cache, a quantized cache type's bytes (scales included), and which weight bytes a
decode step is sure to read.
"""

from __future__ import annotations

import math

from autotune.hardware import Hardware
from autotune.probe.cpu import parse_cpu_list

READ_OVER_COPY = 2.0
"""How much faster than the probe's copy figure a read-only stream may go. The probe counts a copy's bytes
read plus written (STREAM's "copy"), which leaves out write-allocate traffic; a decode step mostly reads.
Measured on the 2-core Xeon VM with 1 GiB arrays: one thread read 29 GB/s through a matrix-vector
product against 23 GB/s copied (1.25×); 2 leaves a margin so that the bound stays below any real step."""


def kv_cache_bytes(*, layers: int, kv_heads: int, head_dim: int, context: int, bytes_per_element: float,
                   value_bytes_per_element: float | None = None, value_head_dim: int | None = None) -> int:
    """Bytes of a KV cache: layers × kv heads × head dim × 2 (K and V) × context × bytes per element.

    - ``layers``: the layers that hold this cache (all of them, or those not offloaded);
    - ``kv_heads``, ``head_dim``: key/value heads per layer and their width;
    - ``context``: the positions the runtime allocates (the context, rounded up to its block size or
      with one more for the last picked token);
    - ``bytes_per_element``: of the cache type, a quantized type's scales included (e.g. llama.cpp's
      q8_0 stores 34 bytes per 32 values: 1.0625);
    - ``value_bytes_per_element``, ``value_head_dim``: V's own, where they differ from K's (llama.cpp
      quantizes only K without flash attention).
    """
    value_bytes = bytes_per_element if value_bytes_per_element is None else value_bytes_per_element
    value_dim = head_dim if value_head_dim is None else value_head_dim
    return int(layers * kv_heads * context * (head_dim * bytes_per_element + value_dim * value_bytes))


def cache_capacity_bytes(hardware: Hardware) -> int:
    """At most how many bytes the CPU's data caches can hold for the cores this process may use.

    Every data (and unified) level counts, each instance the usable cores can reach: a cache shared
    by N CPUs has at most logical cores / N instances, and no more than one per usable core.
    """
    cpu = hardware.cpu
    total = 0
    for cache in cpu.caches:
        if cache.type == "Instruction":
            continue
        sharing = len(parse_cpu_list(cache.shared_cpu_list or "")) or 1
        instances = min(max(1, cpu.usable_cores), math.ceil(max(1, cpu.logical_cores) / sharing))
        total += cache.size_bytes * instances
    return total


def decode_latency_lower_bound_ms(read_bytes: float, hardware: Hardware) -> float | None:
    """The least time in ms one decode step on the CPU can take: the bytes it must stream from memory.

    ``read_bytes`` are the weight bytes every step reads at least once (matrices in the type the
    runtime reads them; not embedding rows looked up, not experts a router may skip; the KV cache
    is left out). What the caches can hold is taken off, and the remainder is divided by the
    measured all-thread bandwidth times ``READ_OVER_COPY``, so the bound stays below the real step
    (the tuner skips a configuration whose bound exceeds the latency budget). None when the
    bandwidth was not measured or the weights may all fit in the caches.
    """
    bandwidth = hardware.memory.bandwidth_bytes_per_s
    from_memory = read_bytes - cache_capacity_bytes(hardware)
    if not bandwidth or from_memory <= 0:
        return None
    return from_memory / (READ_OVER_COPY * bandwidth) * 1000

