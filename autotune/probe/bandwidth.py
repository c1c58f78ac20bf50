"""The bandwidth probe: a short measured memory copy, one thread and all usable threads.

Token generation of a language model streams all its weights once per token, so memory bandwidth
bounds decode speed; a measured figure makes latency predictions honest. numpy releases the GIL
while copying large arrays, so threads copying separate slices load every core.

Bandwidth is counted the way STREAM's "copy" counts it: bytes read plus bytes written per second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np

from autotune.hardware import HardwareFact, MemoryBandwidth
from autotune.hookspecs import hookimpl

MIN_WORKING_SET = 64 * 2**20
MAX_WORKING_SET = 512 * 2**20
PHASE_SECONDS = 0.15
"""Time spent repeating copies in each of the two phases (after at least ``MIN_REPEATS``)."""
MIN_REPEATS = 2

T = TypeVar("T")

def working_set_bytes(largest_cache: int | None, available: int | None) -> int:
    """Bytes copied per pass (source plus destination): four times the largest cache, so nearly all
    of it comes from DRAM, within 64–512 MiB and never more than 1/8 of the available memory."""
    size = max(MIN_WORKING_SET, 4 * (largest_cache or 0))
    size = min(size, MAX_WORKING_SET)
    if available:
        size = min(size, available // 8)
    return max(size, 2 * 2**20)


def measure_copy_bandwidth(threads: int, working_set: int = MIN_WORKING_SET,
                      phase_seconds: float = PHASE_SECONDS) -> MemoryBandwidth:
    """Measure copy bandwidth with one thread and with ``threads`` threads; best pass of each.

    One source/destination pair of ``working_set / 2`` bytes each is allocated (and first touched
    by the threads that will copy it, so pages land on their NUMA node); the one-thread phase
    copies all of it, the all-thread phase gives each thread its own slice.
    """
    threads = max(1, threads)
    half = (working_set // 2) // (threads * 4096) * (threads * 4096) or threads * 4096
    source = np.empty(half, dtype=np.uint8)
    target = np.empty(half, dtype=np.uint8)
    step = half // threads
    slices = [slice(i * step, (i + 1) * step) for i in range(threads)]

    def touch(part: slice) -> None:
        source[part].fill(1)
        np.copyto(target[part], source[part])

    _in_threads(touch, slices)
    one = _best_rate(lambda: _timed_copy(target, source), 2 * half, phase_seconds)
    if threads == 1:
        return MemoryBandwidth(all_threads_bytes_per_s=one, one_thread_bytes_per_s=one, threads=1)

    barrier = threading.Barrier(threads)

    def copy_slice(part: slice) -> tuple[float, float]:
        barrier.wait()  # start together so the threads really compete for memory
        return _timed_copy(target[part], source[part])

    def all_threads() -> tuple[float, float]:
        spans = _in_threads(copy_slice, slices)
        return min(s for s, _ in spans), max(e for _, e in spans)

    many = _best_rate(all_threads, 2 * step * threads, phase_seconds)
    return MemoryBandwidth(all_threads_bytes_per_s=many, one_thread_bytes_per_s=one, threads=threads)


def _in_threads(work: Callable[[slice], T], parts: list[slice]) -> list[T]:
    """Run ``work`` on each part in its own thread and return the results in order.

    One thread per part rather than a ``ThreadPoolExecutor``: the copy threads meet at a barrier,
    and an executor may run two parts on one worker, which would wait at the barrier forever.
    """
    results: list[T | None] = [None] * len(parts)
    errors: list[BaseException] = []

    def run(position: int) -> None:
        try:
            results[position] = work(parts[position])
        except BaseException as error:  # noqa: BLE001 - re-raised in the calling thread below
            errors.append(error)

    workers = [threading.Thread(target=run, args=(i,), name="autotune-bandwidth") for i in range(len(parts))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def _timed_copy(target: np.ndarray, source: np.ndarray) -> tuple[float, float]:
    start = time.perf_counter()
    np.copyto(target, source)
    return start, time.perf_counter()


def _best_rate(run: Callable[[], tuple[float, float]], bytes_moved: int, seconds: float) -> float:
    """Bytes per second of the fastest of repeated runs (at least ``MIN_REPEATS``, about ``seconds``)."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    repeats = 0
    while repeats < MIN_REPEATS or time.perf_counter() < deadline:
        start, end = run()
        if end > start:
            best = max(best, bytes_moved / (end - start))
        repeats += 1
    return best


@hookimpl
def autotune_hardware_facts(measure_bandwidth: bool) -> Iterator[HardwareFact]:
    """Contribute a measured ``MemoryBandwidth`` (about 0.3 s), unless the caller asked to skip it."""
    if not measure_bandwidth:
        return
    from autotune.probe.cpu import largest_cache_bytes_here, usable_cores_here
    from autotune.probe.memory import available_memory_bytes

    size = working_set_bytes(largest_cache_bytes_here(), available_memory_bytes())
    yield measure_copy_bandwidth(usable_cores_here(), size)
