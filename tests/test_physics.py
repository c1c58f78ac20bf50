"""The physics every backend shares: KV-cache bytes and the memory-bandwidth bound of a decode step."""

from __future__ import annotations

import pytest

from autotune import decode_latency_lower_bound_ms, kv_cache_bytes
from autotune.hardware import CacheLevel, Hardware
from autotune.plugins.physics import READ_OVER_COPY, cache_capacity_bytes
from autotune.testing.conformance import example_hardware

MiB = 2**20


def test_kv_cache_is_layers_heads_dims_k_and_v_context_bytes() -> None:
    # Gemma 3 270M at 2048 tokens, f16: 18 layers × 1 KV head × 256 dims; measured 36 MiB in llama.cpp.
    assert kv_cache_bytes(layers=18, kv_heads=1, head_dim=256, context=2048, bytes_per_element=2) == 36 * MiB
    assert kv_cache_bytes(layers=2, kv_heads=2, head_dim=32, context=129, bytes_per_element=4) == 2 * 2 * 32 * 2 * 129 * 4


def test_kv_cache_takes_a_quantized_k_and_a_different_v() -> None:
    # llama.cpp without flash attention: K in q8_0 (34 bytes per 32 values), V stays f16.
    mixed = kv_cache_bytes(layers=4, kv_heads=2, head_dim=64, context=256, bytes_per_element=34 / 32,
                           value_bytes_per_element=2.0)
    assert mixed == 4 * 2 * 256 * (64 * 34 / 32 + 64 * 2)
    wide_values = kv_cache_bytes(layers=1, kv_heads=1, head_dim=192, context=10, bytes_per_element=2,
                                 value_head_dim=128)
    assert wide_values == 10 * (192 + 128) * 2


def _hardware(caches: list[CacheLevel], bandwidth: float | None = 20e9, usable: int = 4, logical: int = 16) -> Hardware:
    hardware = example_hardware()
    cpu = hardware.cpu.model_copy(update={"caches": caches, "usable_cores": usable, "logical_cores": logical})
    memory = hardware.memory.model_copy(update={"bandwidth_bytes_per_s": bandwidth})
    return hardware.model_copy(update={"cpu": cpu, "memory": memory})


def test_cache_capacity_counts_the_instances_the_usable_cores_reach() -> None:
    caches = [CacheLevel(level=1, type="Data", size_bytes=48 * 1024, shared_cpu_list="0"),
              CacheLevel(level=1, type="Instruction", size_bytes=32 * 1024, shared_cpu_list="0"),
              CacheLevel(level=2, type="Unified", size_bytes=2 * MiB, shared_cpu_list="0,8"),
              CacheLevel(level=3, type="Unified", size_bytes=32 * MiB, shared_cpu_list="0-7")]
    # 4 usable of 16 CPUs: 4 private L1d, 4 of the 8 L2s (shared by 2), both L3s at most (shared by 8).
    assert cache_capacity_bytes(_hardware(caches)) == 4 * 48 * 1024 + 4 * 2 * MiB + 2 * 32 * MiB
    # Without a sharing list every core is assumed to have its own instance (the most a cache could hold).
    assert cache_capacity_bytes(_hardware([CacheLevel(level=2, type="Unified", size_bytes=MiB)])) == 4 * MiB


def test_bandwidth_bound_reads_what_the_caches_cannot_hold_at_twice_the_copy_rate() -> None:
    hardware = _hardware([CacheLevel(level=3, type="Unified", size_bytes=32 * MiB, shared_cpu_list="0-15")])
    bound = decode_latency_lower_bound_ms(1032 * MiB, hardware)
    assert bound == pytest.approx(1000 * MiB / (READ_OVER_COPY * 20e9) * 1000)
    # A 1 GiB model cannot step faster than streaming what does not fit in 32 MiB of cache.
    assert bound is not None and 25 < bound < 1032 * MiB / 20e9 * 1000


def test_no_bound_without_bandwidth_or_when_the_weights_fit_in_the_caches() -> None:
    l3 = [CacheLevel(level=3, type="Unified", size_bytes=32 * MiB, shared_cpu_list="0-15")]
    assert decode_latency_lower_bound_ms(500 * MiB, _hardware(l3, bandwidth=None)) is None
    assert decode_latency_lower_bound_ms(30 * MiB, _hardware(l3)) is None
