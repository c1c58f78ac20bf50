import os
import sys
import time

from autotune.measure.worker import WorkerTask, run_in_worker


def _add(a: int, b: int) -> int:
    return a + b


def _raise() -> None:
    raise ValueError("bad model file")


def _crash() -> None:
    os.abort()


def _hang() -> None:
    time.sleep(60)


def _allocate(mib: int) -> int:
    block = bytearray(mib * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(2)
    return len(block)


def test_value_and_peak_memory() -> None:
    result = run_in_worker(WorkerTask(_add, (2, 3)), timeout_s=60)
    assert result.ok and result.value == 5
    assert result.peak_rss_bytes and result.peak_rss_bytes > 5 * 2**20


def test_exception_becomes_reason() -> None:
    result = run_in_worker(WorkerTask(_raise), timeout_s=60)
    assert not result.ok and "ValueError: bad model file" in (result.error or "")


def test_crash_becomes_reason() -> None:
    result = run_in_worker(WorkerTask(_crash), timeout_s=60)
    assert not result.ok and "SIGABRT" in (result.error or "")


def test_timeout_kills_the_worker() -> None:
    started = time.perf_counter()
    result = run_in_worker(WorkerTask(_hang), timeout_s=1.5)
    assert not result.ok and "timed out" in (result.error or "")
    assert time.perf_counter() - started < 20


def test_memory_guard_kills_the_worker() -> None:
    result = run_in_worker(WorkerTask(_allocate, (400,)), timeout_s=60, memory_limit_bytes=200 * 2**20)
    assert not result.ok and "memory guard" in (result.error or "")


def test_page_cache_fraction_of_a_file_just_written(tmp_path) -> None:
    from autotune.measure.machine_state import page_cache_fraction

    path = tmp_path / "model.bin"
    path.write_bytes(b"x" * (1 << 20))
    fraction = page_cache_fraction(path)
    if sys.platform.startswith("linux"):
        assert fraction is not None and 0.9 <= fraction <= 1.0  # just written: in the page cache
