"""The NVIDIA and Apple probes: nvidia-smi CSV/XML captures, a fake nvidia-smi, made-up sysctl output."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from autotune.probe import apple, nvidia
from autotune.testing.captures import sections

FIXTURES = Path(__file__).parent / "fixtures" / "hardware"
XEON = FIXTURES / "xeon-16c-h200"
EPYC = FIXTURES / "epyc-2c-kvm"
H200_BYTES = 143771 * 2**20


def smi_csv(machine: Path) -> str:
    """The ``### nvidia-smi csv`` section of a capture's ``system.txt``."""
    return sections(machine)["nvidia-smi csv"]


def test_nvidia_smi_csv_of_the_h200() -> None:
    [gpu] = nvidia.parse_nvidia_smi_csv(smi_csv(XEON))
    assert (gpu.kind, gpu.name, gpu.memory_bytes) == ("cuda", "NVIDIA H200", H200_BYTES)
    assert gpu.details == {"index": "0", "driver": "580.159.04", "compute_capability": "9.0"}
    # NVML reported the same total on that machine.
    nvml = json.loads((XEON / "python_probe.json").read_text())["nvml"]
    assert nvml["gpus"][0]["total"] == gpu.memory_bytes


def test_no_nvidia_smi_means_no_gpus() -> None:
    assert "command not found" in smi_csv(EPYC)
    assert nvidia.parse_nvidia_smi_csv(smi_csv(EPYC)) == []
    assert nvidia.parse_nvidia_smi_csv("") == []
    assert nvidia.parse_nvidia_smi_csv("NVIDIA-SMI has failed because it couldn't communicate with the driver.") == []


def test_nvidia_smi_csv_without_extra_columns_and_two_gpus() -> None:
    text = ("index, name, uuid, memory.total [MiB], driver_version, compute_cap\n"
            "0, NVIDIA GeForce RTX 4090, GPU-1, 24564 MiB, 550.54.14, 8.9\n"
            "1, NVIDIA GeForce RTX 4090, GPU-2, 24564 MiB, 550.54.14, [N/A]\n")
    first, second = nvidia.parse_nvidia_smi_csv(text)
    assert first.memory_bytes == 24564 * 2**20 and first.details["compute_capability"] == "8.9"
    assert second.details["index"] == "1" and "compute_capability" not in second.details


def test_nvidia_smi_xml_of_the_h200() -> None:
    [gpu] = nvidia.parse_nvidia_smi_xml((XEON / "nvidia-smi.xml").read_text())
    assert (gpu.kind, gpu.name, gpu.memory_bytes) == ("cuda", "NVIDIA H200", H200_BYTES)
    assert gpu.details["driver"] == "580.159.04" and gpu.details["index"] == "0"


def test_hook_without_driver_or_binary_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvidia, "nvml_accelerators", lambda: None)
    monkeypatch.setenv("PATH", "")
    assert list(nvidia.autotune_hardware_facts()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="uses a shell script as a fake nvidia-smi")
def test_hook_runs_nvidia_smi_when_nvml_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "answer.csv").write_text(smi_csv(XEON))
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncase \"$1\" in --query-gpu=*) cat '{tmp_path / 'answer.csv'}';; *) exit 9;; esac\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(nvidia, "nvml_accelerators", lambda: None)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    [gpu] = list(nvidia.autotune_hardware_facts())
    assert gpu.name == "NVIDIA H200" and gpu.memory_bytes == H200_BYTES


def test_nvml_on_this_machine_does_not_raise() -> None:
    found = nvidia.nvml_accelerators()
    assert found is None or all(a.kind == "cuda" and a.name for a in found)


M2_SYSCTL = """\
machdep.cpu.brand_string: Apple M2 Pro
hw.memsize: 34359738368
hw.optional.arm64: 1
hw.physicalcpu: 10
hw.logicalcpu: 10
hw.optional.neon: 1
hw.optional.arm.FEAT_DotProd: 1
"""

INTEL_MAC_SYSCTL = """\
machdep.cpu.brand_string: Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz
hw.memsize: 17179869184
machdep.cpu.features: FPU VME SSE4.1 SSE4.2 AVX1.0 F16C
"""


def test_parse_sysctl() -> None:
    values = apple.parse_sysctl(M2_SYSCTL + "kern.ostype = Darwin\n")
    assert values["machdep.cpu.brand_string"] == "Apple M2 Pro"
    assert values["hw.memsize"] == "34359738368"
    assert values["kern.ostype"] == "Darwin"


def test_metal_accelerator_from_sysctl() -> None:
    gpu = apple.metal_accelerator(apple.parse_sysctl(M2_SYSCTL))
    assert gpu is not None
    assert (gpu.kind, gpu.name, gpu.memory_bytes) == ("metal", "Apple M2 Pro", 32 * 2**30)
    assert gpu.details["unified_memory"] == "true"


def test_intel_mac_has_no_metal_accelerator() -> None:
    assert apple.metal_accelerator(apple.parse_sysctl(INTEL_MAC_SYSCTL)) is None


def test_intel_mac_features_canonicalised() -> None:
    from autotune.probe.cpu import sysctl_cpu_info

    info = sysctl_cpu_info(apple.parse_sysctl(INTEL_MAC_SYSCTL), architecture="x86_64")
    assert {"sse4_1", "sse4_2", "avx", "f16c"} <= set(info.features)
    assert "neon" not in info.features


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the probe stays silent off macOS")
def test_apple_hook_yields_nothing_elsewhere() -> None:
    assert list(apple.autotune_hardware_facts()) == []
