"""The chosen configuration against the rule of thumb and the untuned default, in one neutral harness.

Input: a profile JSON written by ``autotune run`` whose backend is llamacpp. Three llama-cpp-python set-ups
are measured by the same harness, interleaved:

* chosen: ``llama_cpp.Llama(**kwargs)`` with exactly the keyword arguments of the profile's
  ``llama-cpp-python`` export (the snippet a user pastes; its artifact, threads, batches, KV types, ...);
* rule of thumb: ``Llama(model_path=<source model>, n_threads=<physical cores>)``, every other setting at
  llama-cpp-python's default ("all physical cores, runtime defaults");
* untuned: ``Llama(model_path=<source model>)``.

All three get the profile's context window as ``n_ctx`` (the chosen one's export sets it; a user serving
that context must set it too) and ``verbose=False``. Each measurement runs in a fresh worker process
(``autotune.measure.worker.run_in_worker``) and follows autotune's measurement protocol (``autotune.measure_session``:
load, one warm-up, the profile's timed runs of its prompt and generated tokens, at the start of the
context). ``--rounds`` rounds (default 6) measure the three in rotating order. It prints each round, then the
median decode tok/s of each set-up with a bootstrap interval, the paired ratios chosen / rule of thumb and
chosen / untuned (``autotune.decide.stats.paired_ratio``: median of per-round ratios, 95% bootstrap interval over
rounds) with a verdict: "tie (inside the noise)" when the interval contains 1.0, else "faster" / "slower"
("same configuration" when the two set-ups resolve to identical llama-cpp-python settings), next to what
the profile itself states. Fewer than 5 rounds give intervals too narrow to judge by (it says so).

    .venv/bin/python bench/rule_of_thumb.py PROFILE.json [--rounds 6]

Runtime: one measurement is a worker start, the load, a warm-up and the timed runs. On the 2-core development
VM, SmolLM2-135M took about 6 s per measurement (2 rounds in 38 s on a quiet machine; 3 rounds in 6 minutes
while a test suite ran beside it); Gemma 3 270M, whose untuned default decodes at about 23 tok/s, should
take about 3 minutes for the default 6 rounds (estimated, not run).
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotune import DecodeSession, Measurement, Workload, load_profile, measure_session, prompt_text_tokens
from autotune.decide.stats import bootstrap_interval, paired_ratio
from autotune.measure.worker import WorkerTask, run_in_worker
from autotune.options import MIN_CONFIRM_ROUNDS
from autotune.plugins.manager import get_plugin_manager
from autotune.probe.machine import probe
from autotune.profile.schema import DeploymentProfile, Interval

CHOSEN, RULE, UNTUNED = "chosen", "rule of thumb", "untuned"
EXPORT = "llama-cpp-python"


class DefaultsSession(DecodeSession):
    """A ``llama_cpp.Llama`` built from plain keyword arguments, driven by autotune's measurement protocol."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.llm = llama_cpp.Llama(**kwargs)
        self.n_vocab = int(self.llm.n_vocab())

    def prompt_tokens(self, count: int) -> list[int]:
        return prompt_text_tokens(lambda text, bos: self.llm.tokenize(text.encode(), add_bos=bos, special=False), count)

    def reset(self) -> None:
        self.llm.reset()

    def prefill(self, tokens: list[int]) -> None:
        self.llm.eval(tokens)

    def first_token(self) -> int:
        return self._greedy()

    def step(self, token: int) -> int:
        self.llm.eval([token])
        return self._greedy()

    def _greedy(self) -> int:
        """Arg-max of the last position's logits, read in place from llama.cpp's buffer."""
        logits = np.ctypeslib.as_array(self.llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))
        return int(logits.argmax())


def resolve(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Turn ``{"llama_cpp": "GGML_TYPE_F16"}`` markers (attributes in the export) into llama_cpp's values."""
    import llama_cpp

    return {name: getattr(llama_cpp, value["llama_cpp"]) if isinstance(value, dict) else value
            for name, value in kwargs.items()}


def measure_setup(kwargs: dict[str, Any], workload: Workload) -> Measurement:
    """Runs in the worker: load ``Llama(**kwargs)`` and measure it by autotune's protocol."""
    resolved = resolve(kwargs)
    return measure_session(lambda: DefaultsSession(resolved), workload)


def export_kwargs(profile: DeploymentProfile) -> dict[str, Any]:
    """The keyword arguments of ``Llama(...)`` in the profile's llama-cpp-python export.

    The export is read as Python syntax, never executed: each argument is a literal or a ``llama_cpp.NAME``
    attribute (kept as a marker, resolved in the worker).
    """
    text = profile.exports.get(EXPORT)
    if text is None:  # an older profile: render it with the installed exporter
        exporter = get_plugin_manager().exporters().get(EXPORT)
        if exporter is None:
            raise SystemExit(f"the profile has no {EXPORT!r} export and no installed exporter renders one")
        text = exporter.render(profile)
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Llama":
            kwargs: dict[str, Any] = {}
            for keyword in node.keywords:
                value = keyword.value
                if isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name) and value.value.id == "llama_cpp":
                    kwargs[str(keyword.arg)] = {"llama_cpp": value.attr}
                else:
                    kwargs[str(keyword.arg)] = ast.literal_eval(value)
            return {**kwargs, "verbose": False}
    raise SystemExit(f"no Llama(...) call in the profile's {EXPORT!r} export:\n{text}")


def effective(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What ``Llama(**kwargs)`` runs with: llama-cpp-python's defaults filled in as its constructor fills them."""
    import inspect
    import multiprocessing

    import llama_cpp

    defaults = {name: parameter.default for name, parameter in inspect.signature(llama_cpp.Llama.__init__).parameters.items()
                if parameter.default is not inspect.Parameter.empty}
    settings = {**defaults, **resolve(kwargs)}
    settings["model_path"] = str(Path(settings["model_path"]).resolve())
    settings["n_threads"] = settings["n_threads"] or max(multiprocessing.cpu_count() // 2, 1)
    settings["n_threads_batch"] = settings["n_threads_batch"] or multiprocessing.cpu_count()
    for cache in ("type_k", "type_v"):  # None: llama.cpp's f16 cache
        settings[cache] = llama_cpp.GGML_TYPE_F16 if settings[cache] is None else settings[cache]
    for irrelevant in ("verbose", "seed"):  # neither changes the speed of greedy decoding
        settings.pop(irrelevant, None)
    return settings


def shown(kwargs: dict[str, Any]) -> str:
    """The arguments besides the model path and verbosity, compactly."""
    parts = [f"{k}={v['llama_cpp'].removeprefix('GGML_TYPE_').lower() if isinstance(v, dict) else v}"
             for k, v in kwargs.items() if k not in ("model_path", "verbose")]
    return f"{Path(kwargs['model_path']).name}: " + (", ".join(parts) or "(defaults)")


def verdict(ratio: Interval) -> str:
    if ratio.low <= 1.0 <= ratio.high:
        return "tie (inside the noise)"
    return "faster" if ratio.low > 1.0 else "slower"


def ratio_line(name: str, ratio: Interval, same: bool = False) -> str:
    judged = "same configuration (any difference is noise)" if same else verdict(ratio)
    return f"{name}: {ratio.value:.3f} [{ratio.low:.3f}, {ratio.high:.3f}] → {judged}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("profile", type=Path, help="a profile JSON from `autotune run` (backend llamacpp)")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement (default 600)")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    if profile.backend.name != "llamacpp":
        raise SystemExit(f"the profile's backend is {profile.backend.name!r}; this harness runs llama-cpp-python only")
    hardware = probe(get_plugin_manager())
    if profile.hardware.get("fingerprint") != hardware.fingerprint:
        print("warning: the profile was tuned on another machine (hardware fingerprints differ)")
    cores = max(1, min(hardware.cpu.physical_cores, hardware.cpu.usable_cores))
    context, source = profile.workload.context, profile.model.path
    setups: dict[str, dict[str, Any]] = {
        CHOSEN: export_kwargs(profile),
        RULE: {"model_path": source, "n_ctx": context, "n_threads": cores, "verbose": False},
        UNTUNED: {"model_path": source, "n_ctx": context, "verbose": False},
    }
    workload = profile.workload.model_copy(update={"depth": 0})
    print(f"machine: {hardware.cpu.brand} ({hardware.cpu.architecture}), {hardware.cpu.physical_cores} physical / "
          f"{hardware.cpu.logical_cores} logical cores, {hardware.cpu.usable_cores} usable")
    print(f"workload: {workload.prompt_tokens} prompt + {workload.gen_tokens} generated tokens, {workload.runs} timed "
          f"runs after a warm-up, context {context}; {args.rounds} rounds, fresh worker per measurement")
    for name, kwargs in setups.items():
        print(f"  {name:<13} {shown(kwargs)}")
    # The worker imports the task's function by its module name: this file, as ``rule_of_thumb`` (bench/ is
    # on the worker's path), not as ``__main__``.
    import rule_of_thumb as harness

    tps: dict[str, list[float]] = {name: [] for name in setups}
    p95: dict[str, list[float]] = {name: [] for name in setups}
    names = list(setups)
    for index in range(args.rounds):
        order = names[index % len(names):] + names[:index % len(names)]
        figures = []
        for name in order:
            result = run_in_worker(WorkerTask(harness.measure_setup, (setups[name], workload)), timeout_s=args.timeout)
            if not result.ok:
                print(f"round {index + 1}: {name} failed: {result.error}\n{result.output_tail[-1000:]}")
                return 1
            measured: Measurement = result.value
            tps[name].append(measured.decode_tps)
            p95[name].append(measured.itl_p95_ms)
            figures.append(f"{name} {measured.decode_tps:.1f}")
        # Other programs on the machine are the noise this harness cannot remove: show how busy it was.
        print(f"round {index + 1}: " + ", ".join(figures) + f" tok/s (load average {os.getloadavg()[0]:.1f} on "
              f"{hardware.cpu.usable_cores} usable cores)", flush=True)

    print(f"\n{'':<13} {'decode tok/s, median [95% CI]':>31} {'p95 ms (median)':>16}")
    for name in names:
        m = bootstrap_interval(tps[name])
        print(f"{name:<13} {m.value:>12.1f} [{m.low:6.1f}, {m.high:6.1f}]      {statistics.median(p95[name]):>12.1f}")
    print()
    if args.rounds < MIN_CONFIRM_ROUNDS:
        print(f"note: {args.rounds} rounds: a bootstrap over fewer than {MIN_CONFIRM_ROUNDS} rounds cannot tell the noise "
              "apart; the intervals below are not reliable")
    same = {(a, b): effective(setups[a]) == effective(setups[b]) for a, b in ((CHOSEN, RULE), (CHOSEN, UNTUNED), (RULE, UNTUNED))}
    print(ratio_line("chosen / rule of thumb ", paired_ratio(tps[CHOSEN], tps[RULE]), same[CHOSEN, RULE]))
    print(ratio_line("chosen / untuned       ", paired_ratio(tps[CHOSEN], tps[UNTUNED]), same[CHOSEN, UNTUNED]))
    print(ratio_line("rule of thumb / untuned", paired_ratio(tps[RULE], tps[UNTUNED]), same[RULE, UNTUNED]))
    confirmation = profile.confirmation
    if confirmation is not None:
        stated = []
        if confirmation.speedup_over_rule_of_thumb is not None:
            s = confirmation.speedup_over_rule_of_thumb
            stated.append(f"{s.value:.2f}× [{s.low:.2f}, {s.high:.2f}] the rule of thumb "
                          f"({confirmation.versus_rule_of_thumb or 'no verdict'})")
        if confirmation.speedup_over_untuned is not None:
            s = confirmation.speedup_over_untuned
            stated.append(f"{s.value:.2f}× [{s.low:.2f}, {s.high:.2f}] the untuned default")
        print(f"the profile states: {'; '.join(stated) or 'no ratios'} ({confirmation.rounds} confirmation rounds)")
    else:
        print("the profile states no confirmation (it was run with --confirm-rounds 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
