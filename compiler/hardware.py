"""What the plan may use: the declared budget, or what this machine has (probed at the CLI edge
only; the planner itself is pure)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Literal

from distill.compiler.checks import Finding
from distill.compiler.spec import Hardware

# Share of probed host memory the plan may use: the OS, the page cache of the dataset and other
# processes need the rest.
RAM_SHARE = 0.9


@dataclass(frozen=True)
class Budget:
    """The machine a plan is made for.

    Attributes:
        device: "cpu" or "cuda".
        memory: bytes per process the plan must fit (GPU memory on cuda, host memory on cpu).
        memory_source: "declared" or "probed: ...".
        processes: processes per node x nodes.
        tflops: dense throughput per process in TFLOP/s, or ``None`` when unknown.
        tflops_source: where the throughput came from.
        gpu_name: the probed GPU's name, for the record.
    """

    device: Literal["cpu", "cuda"]
    memory: int
    memory_source: str
    processes: int
    tflops: float | None
    tflops_source: str
    gpu_name: str | None = None


def probe_budget(hardware: Hardware, measure_cpu: bool = True) -> Budget:
    """Declared values first; the rest from this machine."""
    gpus = _probe_gpus()
    device = hardware.device if hardware.device != "auto" else ("cuda" if gpus else "cpu")
    name = gpus[0][0] if gpus and device == "cuda" else None
    if device == "cuda":
        if hardware.vram is not None:
            memory, source = hardware.vram, "declared hardware.vram"
        elif gpus:
            memory, source = gpus[0][1], f"probed: nvidia-smi total memory of {gpus[0][0]}"
        else:
            memory, source = 0, "unknown: no GPU found and hardware.vram not declared"
    elif hardware.ram is not None:
        memory, source = hardware.ram, "declared hardware.ram"
    else:
        total = _mem_total()
        memory = int(total * RAM_SHARE)
        source = f"probed: {RAM_SHARE:.0%} of MemTotal {total / 2**30:.1f} GiB"
    if hardware.tflops is not None:
        tflops, tflops_source = hardware.tflops, "declared hardware.tflops"
    elif device == "cpu" and measure_cpu:
        tflops, tflops_source = _measure_cpu_tflops()
    else:
        tflops, tflops_source = None, "unknown: declare hardware.tflops for time estimates"
    return Budget(device, memory, source, hardware.world_size, tflops, tflops_source, name)


def ignored_declarations(hardware: Hardware, budget: Budget) -> list[Finding]:
    """Warnings for what the Distillfile declares and this plan cannot use: a ``vram`` when
    ``device: auto`` found no GPU here and planned for the CPU."""
    if hardware.device == "auto" and budget.device == "cpu" and hardware.vram is not None:
        return [Finding(("hardware", "vram"), "no GPU found here: device auto plans for the CPU, so the "
                        f"declared vram is ignored (planned for {budget.memory / 2**30:.1f} GiB of RAM, "
                        f"{budget.memory_source})", "set hardware.device: cuda to plan for a GPU elsewhere",
                        "warning")]
    return []


def _probe_gpus() -> list[tuple[str, int]]:
    """(name, total bytes) per GPU from nvidia-smi, which needs no torch import."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mib = line.rpartition(",")
        if mib.strip().isdigit():
            gpus.append((name.strip(), int(mib) * 2**20))
    return gpus


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _measure_cpu_tflops() -> tuple[float, str]:
    """fp32 matmul rate of this CPU with numpy (no torch at plan time): 512x512 products for
    ~0.3 s; each is 2 x 512^3 FLOPs."""
    import numpy as np

    n = 512
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b  # warm the BLAS threads
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < 0.3:
        a @ b
        count += 1
    tflops = 2 * n**3 * count / elapsed / 1e12
    return tflops, f"measured: numpy fp32 {n}x{n} matmul, {tflops:.3f} TFLOP/s"
