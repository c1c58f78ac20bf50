"""Which backends a run tunes, and from what: self-tested, each given a model it can read (directly or converted)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autotune.budget import format_bytes
from autotune.context import RunContext
from autotune.errors import AutotuneError, BackendUnavailable, ConversionFailed, PluginError
from autotune.hardware import Hardware
from autotune.measure.selftest import usable, usable_all
from autotune.measure.worker import WorkerTask, run_in_worker
from autotune.model.source import ModelSource, cached_content_hash, detect_format
from autotune.plugins.backend import Availability, Backend, Params, SearchSpace, has_logprobs
from autotune.plugins.boundary import PluginFault, checked, checked_params, checked_space, outside, warn_once
from autotune.plugins.boundary import availability_of as checked_availability
from autotune.plugins.conversion import Conversion, find_path
from autotune.plugins.manager import PluginManager
from autotune.record import config_key
from autotune.reporting import Reporter
from autotune.search.refusals import recall, remember
from autotune.store.cache import artifact_dir, building
from autotune.store.page_cache import drop_cached_pages
from autotune.workload import Workload


@dataclass
class ResolvedBackend:
    """A backend with the model source it will tune from (possibly converted)."""

    backend: Backend
    source: ModelSource
    conversions: list[str]


CONVERSION_TIMEOUT_S = 3600.0
"""A conversion (tracing a model, building ONNX) takes minutes on 2 cores; an hour means it hangs."""


def _conversion_dir(conversion: Conversion, path: Path) -> Path:
    key: dict[str, object] = {"conversion": conversion.name, "source": cached_content_hash(path)}
    return artifact_dir("conversions", key)


def is_converted(conversion: Conversion, path: Path) -> bool:
    """Whether ``convert_cached`` has this conversion of this content already."""
    return (_conversion_dir(conversion, path) / "output-path.txt").exists()


def convert_cached(conversion: Conversion, path: Path, memory_limit_bytes: int | None = None) -> Path:
    """Run a conversion once per input content, in a worker; later calls return the cached output.

    In a worker because converters load whole models (PyTorch, transformers): their memory is
    returned to the system when the worker ends, a runaway allocation meets the memory guard
    instead of the tuner, and a crash becomes a reason instead of a dead tuner.
    """
    final = _conversion_dir(conversion, path)
    marker = final / "output-path.txt"
    if not marker.exists():
        with building(final) as workdir:
            result = run_in_worker(WorkerTask(conversion.convert, (path, workdir)), timeout_s=CONVERSION_TIMEOUT_S,
                                   memory_limit_bytes=memory_limit_bytes)
            if not result.ok:
                if result.error_type == BackendUnavailable.__name__:  # the converter refuses this model: final
                    raise BackendUnavailable(f"conversion {conversion.name}: {result.error}")
                raise ConversionFailed(f"conversion {conversion.name} failed: {result.error}")
            output = Path(result.value)
            (workdir / "output-path.txt").write_text(str(output.resolve().relative_to(workdir.resolve())))
    return final / marker.read_text().strip()


def resolve(path: Path, backends: Sequence[Backend], conversions: Sequence[Conversion], reporter: Reporter,
            availability_of: Callable[[Backend], Availability] = checked_availability,
            memory_limit_bytes: int | None = None,
            skipped: dict[str, str] | None = None,
            ) -> list[ResolvedBackend]:
    """For each available backend, a ModelSource in a format it accepts; backends that cannot get one are skipped with a reason.

    ``availability_of`` decides which backends may run (the tuner passes the self-test's verdict);
    ``skipped`` receives each left-out backend's reason.
    """
    skipped = {} if skipped is None else skipped

    def skip(backend: Backend, reason: str) -> None:
        skipped[backend.name] = reason
        reporter.warn(f"backend {backend.name!r} skipped: {reason}")

    source_format = detect_format(path)
    resolved = []
    dropped: set[Path] = set()  # a source several backends read is flushed and dropped once
    for backend in backends:
        availability = availability_of(backend)
        if not availability.available:
            skip(backend, availability.reason)
            continue
        chain = find_path(conversions, source_format, backend.source_formats)
        if chain is None:
            skip(backend, f"it reads {', '.join(sorted(backend.source_formats))} and no installed conversion leads "
                          f"there from {source_format}")
            continue
        try:
            current = path
            for conversion in chain:
                needed = None if is_converted(conversion, current) else conversion.memory_estimate(current)
                if needed is not None and memory_limit_bytes is not None and needed > memory_limit_bytes:
                    raise AutotuneError(
                        f"conversion {conversion.name} would need about {format_bytes(needed)} (estimated), more than "
                        f"the {format_bytes(memory_limit_bytes)} this machine lets a worker use; not attempted")
                if not is_converted(conversion, current):
                    reporter.info(f"converting {current.name} with {conversion.name} for {backend.name} (once per model; "
                         "can take minutes)")
                started = time.perf_counter()
                current = convert_cached(conversion, current, memory_limit_bytes)
                if time.perf_counter() - started > 2:
                    reporter.info(f"converted with {conversion.name} in {time.perf_counter() - started:.0f} s")
            source = checked(backend.inspect(current), ModelSource, f"{backend.name}.inspect()")
            if Path(source.path) not in dropped:  # every candidate is first read from the disk, the source too
                drop_cached_pages(Path(source.path))
                dropped.add(Path(source.path))
            resolved.append(ResolvedBackend(backend, source, [c.name for c in chain]))
        except BackendUnavailable as error:
            remember(backend, cached_content_hash(path), str(error))
            skip(backend, str(error))
        except AutotuneError as error:
            skip(backend, str(error))
        except Exception as error:  # noqa: BLE001 - a converter's failure must not end the run
            skip(backend, f"conversion failed: {error!r}")
    return resolved


@dataclass
class BackendPlan:
    """The backends a run tunes, each with its model source, search space and starting points."""

    resolved: list[ResolvedBackend]
    spaces: dict[str, SearchSpace]
    starts: dict[str, list[Params]]
    left_out: dict[str, str] = field(default_factory=dict)
    """Backends installed but not tuned, with why (unavailable, cannot run this model, cannot compete here)."""

    @property
    def by_name(self) -> dict[str, ResolvedBackend]:
        """The resolved backends by name."""
        return {r.backend.name: r for r in self.resolved}


def select_backends(manager: PluginManager, names: Sequence[str]) -> list[Backend]:
    """The backends to tune: the named ones (error on unknown names), or all installed."""
    available = manager.backends()
    if not names:
        return list(available.values())
    unknown = [n for n in names if n not in available]
    if unknown:
        known = ", ".join(sorted(available)) or "none installed"
        raise PluginError(f"unknown backend {', '.join(map(repr, unknown))} (installed: {known}); see `autotune plugins`")
    return [available[n] for n in dict.fromkeys(names)]


def plan_backends(context: RunContext, backends: Sequence[Backend]) -> BackendPlan:
    """Self-test, resolve and plan the backends; a backend that cannot take part is skipped with a warning.

    "Runs here", not "imports here": the self-tests run in workers, side by side, before any conversion.
    Backends the user named (``options.backends``) are tuned even when ``not_worth_tuning`` here.
    """
    model_path, manager, hardware, workload = context.model_path, context.manager, context.hardware, context.workload
    reporter, phases, named = context.reporter, context.phases, bool(context.options.backends)
    left_out: dict[str, str] = {}
    for backend in backends:  # before the self-tests: a backend that cannot measure this workload is not tested
        reason = (_workload_refusal(backend, workload, reporter, named)
                  or (None if named else _single_stream_server(backend, workload, reporter)))
        if reason is not None:
            left_out[backend.name] = reason
    with phases.timing("self-tests"):
        checks = usable_all([b for b in backends if b.measures_this_machine and b.name not in left_out], hardware)
    native = native_source(model_path, manager)  # one header read serves every backend's supports()
    model_sha256 = cached_content_hash(model_path)
    for backend in backends:
        if backend.name in left_out:
            continue
        reason = (_refusal(backend, native, model_sha256, reporter)
                  or (None if named else _not_worth_it(backend, hardware, reporter)))
        if reason is not None:
            left_out[backend.name] = reason
    backends = [b for b in backends if b.name not in left_out]
    with phases.timing("conversions"):
        resolved = resolve(model_path, backends, manager.conversions(), reporter,
                           lambda b: checks[b.name][0] if b.name in checks else checked_availability(b),
                           hardware.worker_memory_ceiling(), left_out)
    if not resolved:
        raise AutotuneError(f"no installed backend can run {model_path}; see the warnings above and `autotune plugins`")
    plan = BackendPlan([], {}, {}, left_out)
    for r in resolved:
        try:
            plan.spaces[r.backend.name] = checked_space(r.backend.search_space(r.source, hardware, workload),
                                                        f"{r.backend.name}.search_space()")
            starts = starting_points(r, plan.spaces[r.backend.name], hardware, workload, reporter,
                                     cores_left_free(context))
            plan.starts[r.backend.name] = ordered_by_prediction(r, starts, workload, hardware,
                                                                context.options.objective)
        except Exception as error:  # noqa: BLE001 - a plugin's bug costs its backend, never the run
            plan.left_out[r.backend.name] = (str(error) if isinstance(error, PluginFault) else
                                             f"its plugin raised {error!r} while declaring its search space")
            warn_once(reporter, r.backend.name, f"backend {r.backend.name!r} skipped: {plan.left_out[r.backend.name]}")
            plan.spaces.pop(r.backend.name, None)
            continue
        plan.resolved.append(r)
    if not plan.resolved:
        raise AutotuneError("no backend could declare a search space; see the warnings above")
    return plan


def cores_left_free(context: RunContext) -> int | None:
    """The cores ``--under-load``'s competing load leaves to the deployment, or None when the choice is not made
    under a load (every core is the deployment's)."""
    options = context.options
    if not options.under_load or options.busy_share <= 0:
        return None
    return max(1, context.hardware.cpu.usable_cores - math.ceil(options.busy_share))


def starting_points(resolved: ResolvedBackend, space: SearchSpace, hardware: Hardware, workload: Workload,
                    reporter: Reporter, free_cores: int | None = None) -> list[Params]:
    """The backend's starting points that are configurations of its own space, one per canonical spelling.

    They are queued as given (Optuna refuses a value outside the space, and a canonical spelling may be one: mlx
    drops the group size of unquantized weights); one the space cannot produce is left out with one warning.
    With ``free_cores`` (``--under-load``) each is followed by itself on those cores (``Backend.for_cores``), so
    the search measures what can hold up beside the competing load.
    """
    backend, kept, seen, refused = resolved.backend, list[Params](), set[str](), list[str]()
    points = checked(backend.starting_points(resolved.source, hardware, workload), list, f"{backend.name}.starting_points()")
    if free_cores is not None:
        points = [variant for point in points for variant in
                  (point, checked(backend.for_cores(dict(point), free_cores), dict, f"{backend.name}.for_cores()"))]
    for point in points:
        params = checked_params(point, f"{backend.name}.starting_points()")
        key = config_key(backend.name, checked_params(backend.canonical_params(params), f"{backend.name}.canonical_params()"))
        why = outside(space, params)
        if why is not None:
            refused.append(why)
        elif key not in seen:
            seen.add(key)
            kept.append(params)
    if refused:
        warn_once(reporter, backend.name, f"backend {backend.name!r}: {len(refused)} starting point(s) left out, not in "
                                          f"its own search space ({refused[0]}); report it to the plugin")
    return kept


def ordered_by_prediction(resolved: ResolvedBackend, points: list[Params], workload: Workload, hardware: Hardware,
                          objective: str) -> list[Params]:
    """Starting points in the order the hardware model predicts best for ``objective``.

    For latency, fewest bytes streamed per token first (the bandwidth bound, else predicted memory as its
    proxy); for memory, smallest predicted memory first; for quality, as the backend gave them (its source
    precision first). A prediction that raises keeps its point last.
    """
    if objective == "quality":
        return points

    def predicted(params: Params) -> tuple[float, float]:
        try:
            prediction = resolved.backend.predict(resolved.source, params, workload, hardware)
        except Exception:  # noqa: BLE001 - an unpredictable point is still measured, last
            return float("inf"), float("inf")
        bound = prediction.latency_lower_bound_ms
        if objective == "latency":
            return (bound if bound is not None else float("inf")), float(prediction.memory_bytes)
        return float(prediction.memory_bytes), bound or 0.0

    return sorted(points, key=predicted)


def native_source(model_path: Path, manager: PluginManager) -> ModelSource | None:
    """The model as a backend that reads its format natively sees it (header only: milliseconds), or None."""
    model_format = detect_format(model_path)
    for backend in manager.backends().values():
        if model_format not in backend.source_formats:
            continue
        try:
            if checked_availability(backend).available:
                return checked(backend.inspect(model_path), ModelSource, f"{backend.name}.inspect()")
        except Exception:  # noqa: BLE001 - another reader may do; the backend's own trouble is reported later
            continue
    return None


def _not_worth_it(backend: Backend, hardware: Hardware, reporter: Reporter) -> str | None:
    """Leave out, from a default run, a backend that says it cannot compete here."""
    try:
        reason = backend.not_worth_tuning(hardware)
    except Exception as error:  # noqa: BLE001 - a plugin's bug costs its backend, never the run
        reason = f"its plugin raised {error!r} in not_worth_tuning()"
    if reason is not None:
        reporter.info(f"backend {backend.name} left out: {reason}")
    return reason


def _workload_refusal(backend: Backend, workload: Workload, reporter: Reporter, named: bool = False) -> str | None:
    """Leave out, even when named, a backend that measures one stream in-process from a served workload (a warning
    when the user named it, else a line of information)."""
    if not workload.served or backend.serves:
        return None
    reason = ("it measures a single stream in-process, not a server under --clients/--prompts "
              "(a serving backend such as llamacpp-server does)")
    (reporter.warn if named else reporter.info)(f"backend {backend.name!r} skipped: {reason}")
    return reason


def _single_stream_server(backend: Backend, workload: Workload, reporter: Reporter) -> str | None:
    """Leave a serving backend out of a default single-stream run: the in-process backends measure that directly,
    and starting a server for every trial only makes the run slower (``--backend NAME`` tunes it anyway)."""
    if workload.served or not backend.serves:
        return None
    reason = "a single stream is measured in-process; give --clients or --prompts (or --backend) to tune a server"
    reporter.info(f"backend {backend.name} left out: {reason}")
    return reason


def _refusal(backend: Backend, native: ModelSource | None, model_sha256: str, reporter: Reporter) -> str | None:
    """Skip, before any conversion, a backend that refused this model before or says it cannot run it."""
    reason = recall(backend, model_sha256)
    if reason is None:
        try:
            reason = backend.supports(native) if native is not None else None
        except Exception as error:  # noqa: BLE001 - a plugin's bug costs its backend, never the run
            reason = f"its plugin raised {error!r} in supports()"
    if reason is not None:
        reporter.warn(f"backend {backend.name!r} skipped for this model, before any conversion: {reason}")
    return reason


def reference_pool(context: RunContext, resolved: Sequence[ResolvedBackend]) -> list[ResolvedBackend]:
    """Backends that may score quality: the tuned ones, plus any installed one reading the source natively.

    ``--backend mlx`` on a GGUF still gets its quality measured against the GGUF run by llama.cpp.
    """
    model_path, hardware = context.model_path, context.hardware
    model_format = detect_format(model_path)
    pool = list(resolved)
    tuned = {r.backend.name for r in resolved}
    for backend in context.manager.backends().values():
        if backend.name in tuned or model_format not in backend.source_formats or not has_logprobs(backend):
            continue
        try:
            if usable(backend, hardware)[0].available:
                pool.append(ResolvedBackend(backend, backend.inspect(model_path), []))
        except Exception as error:  # noqa: BLE001 - a reference candidate must not end the run
            context.reporter.warn(f"backend {backend.name!r} cannot serve as the quality reference: {error!r}")
    return pool
