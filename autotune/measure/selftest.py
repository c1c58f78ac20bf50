"""Whether a backend really runs here: its runtime's self-test in a worker, cached per build and machine.

"Importable" is not "runs": a llama.cpp built with AMX kernels imports fine on a Xeon KVM guest and
then dies with SIGILL at its first matrix multiplication. So before a backend is tuned (and in
``autotune plugins``), ``Backend.self_test`` runs a tiny model in a fresh worker process. A worker
that dies by a signal makes the backend unavailable, with what the signal means on this machine and
what to do. Results are cached under the backend's runtime identity and the hardware fingerprint,
so the test runs once per runtime build and machine (``refresh=True`` runs it again).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from autotune.hardware import Hardware
from autotune.measure.worker import WorkerTask, run_in_worker, scratch_folder
from autotune.plugins.backend import Availability, Backend, runtime_build, runtime_version
from autotune.store.cache import cache_dir, key_digest, write_json_atomically

SELF_TEST_TIMEOUT_S = 180.0
"""Generous: a first import of a runtime from a cold disk can take tens of seconds."""
SELF_TEST_MEMORY_BYTES = 4 * 2**30
CACHE_VERSION = 1

SIGNAL_MEANINGS = {
    "SIGILL": "illegal instruction: the runtime's binary executed a CPU instruction this machine does not run "
              "(it was built for other CPU features, or its kernels for an ISA extension fail here)",
    "SIGSEGV": "segmentation fault: the runtime accessed memory it must not (a bug or a broken build)",
    "SIGBUS": "bus error: a memory-mapped file became unreadable (a model file truncated while in use, or a full disk)",
    "SIGFPE": "arithmetic fault inside the runtime (a division by zero or a trapped floating-point error)",
    "SIGABRT": "the runtime aborted itself (a failed internal assertion)",
}


@dataclass(frozen=True)
class SelfTestResult:
    """The outcome of one backend's self-test on this machine."""

    passed: bool | None
    """True: it ran; False: it failed; None: the backend has no self-test (availability is import-only)."""
    summary: str
    """What ran, or why it failed (with the remedy)."""
    seconds: float = 0.0
    signal: str | None = None
    cached: bool = False


def explain_signal(signal_name: str, hardware: Hardware) -> str:
    """What dying by ``signal_name`` means on this machine, in one clause."""
    meaning = SIGNAL_MEANINGS.get(signal_name, "killed by a signal")
    if signal_name == "SIGILL":
        extensions = [f for f in hardware.cpu.features if f.startswith(("amx", "avx512", "sve", "i8mm"))]
        if extensions:
            meaning += f"; this CPU ({hardware.cpu.brand or hardware.cpu.architecture}) has {' '.join(extensions[:8])}"
            if any(f.startswith("amx") for f in extensions):
                meaning += ", and llama.cpp's AMX kernels are known to fault on Xeon guests that grant AMX"
    return meaning


def crash_message(backend: Backend, signal_name: str, hardware: Hardware, where: str) -> str:
    """One sentence: which runtime died, by what, what that means here, and what to do."""
    return (f"{backend.name} (version {runtime_version(backend)}) died by {signal_name} {where} — "
            f"{explain_signal(signal_name, hardware)}. To fix: {backend.crash_advice(signal_name)}")


def _self_test_task(backend: Backend) -> str | None:
    """Runs inside the worker."""
    with scratch_folder("selftest") as scratch:
        return backend.self_test(Path(scratch))


def _cache_path(backend: Backend, hardware: Hardware) -> Path:
    key = {"v": CACHE_VERSION, "backend": backend.name, "runtime": runtime_build(backend),
           "hardware": hardware.fingerprint}
    return cache_dir() / "selftest" / f"{backend.name}-{key_digest(key)}.json"


def run_self_test(backend: Backend, hardware: Hardware, *, refresh: bool = False) -> SelfTestResult:
    """The backend's self-test result here: cached, or run now in a worker (only when the runtime imports)."""
    if type(backend).self_test is Backend.self_test:
        return SelfTestResult(passed=None, summary="no self-test (the backend does not define one)")
    path = _cache_path(backend, hardware)
    if not refresh:
        try:
            return SelfTestResult(**{**json.loads(path.read_text()), "cached": True})
        except (OSError, ValueError, TypeError):
            pass  # none yet, or unreadable: test again
    started = time.perf_counter()
    outcome = run_in_worker(WorkerTask(_self_test_task, (backend,)), timeout_s=SELF_TEST_TIMEOUT_S,
                            memory_limit_bytes=SELF_TEST_MEMORY_BYTES)
    seconds = round(time.perf_counter() - started, 2)
    if outcome.ok:
        result = SelfTestResult(passed=True, summary=str(outcome.value or "ran"), seconds=seconds)
    elif outcome.signal is not None:
        result = SelfTestResult(passed=False, signal=outcome.signal, seconds=seconds,
                                summary=crash_message(backend, outcome.signal, hardware, "in its self-test"))
    else:  # an exception or a timeout: a plugin bug or a passing condition, so it is tried again next time
        return SelfTestResult(passed=False, seconds=seconds, summary=f"self-test failed: {outcome.error}")
    write_json_atomically(path, asdict(result))
    return result


def usable(backend: Backend, hardware: Hardware, *, refresh: bool = False) -> tuple[Availability, SelfTestResult | None]:
    """Whether the backend can be tuned here: installed (``availability``) and passing its self-test.

    Returns the availability to act on (unavailable with the self-test's reason when it failed) and
    the self-test result (None when the runtime is not even installed).
    """
    try:
        availability = backend.availability()
    except Exception as error:  # noqa: BLE001 - a broken availability check is reported, not fatal
        return Availability(available=False, reason=f"availability check raised {error!r}"), None
    if not availability.available:
        return availability, None
    result = run_self_test(backend, hardware, refresh=refresh)
    if result.passed is False:
        availability = Availability(available=False, reason=result.summary, version=availability.version,
                                    details=availability.details)
    return availability, result


def usable_all(backends: Sequence[Backend], hardware: Hardware, *,
               refresh: bool = False) -> dict[str, tuple[Availability, SelfTestResult | None]]:
    """``usable`` for several backends at once: their self-tests run side by side, each in its own worker."""
    if not backends:
        return {}
    with ThreadPoolExecutor(max_workers=len(backends)) as pool:
        futures = {b.name: pool.submit(usable, b, hardware, refresh=refresh) for b in backends}
        return {name: future.result() for name, future in futures.items()}
