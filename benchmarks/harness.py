"""Timing, FLOP counting, memory and machine description for benchmarks/run.py (no mmpiqa imports here).

Every timing is the median of a few repeats, each bracketed by a device sync. Next to each repeat the harness
records how much CPU *other* processes used while it ran (from /proc/stat minus this process's own CPU time, in
cores) and the 1-minute load average. Before a repeat the harness waits (out of a budget for the whole run,
`PATIENCE`) until others use less than `BUSY_CORES`; a repeat during which they still did is run again (a few
times at most). So figures from a shared machine come from its quiet moments and say how quiet they were.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import resource
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

BUSY_CORES = 0.25  # a repeat during which other processes used more CPU than this is measured again
EXTRA_TRIES = 4  # at most this many extra repeats per measurement when the machine is busy
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PATIENCE = {
    "seconds": 120.0,
    "waited": 0.0,
}  # waiting budget of the whole run (run.py --patience) and its use


# FlopCounterMode knows the CUDA attention kernels but not the CPU flash kernel that SDPA uses on the CPU;
# it is the same computation, so it is counted with the same formulas (arguments arrive as shapes).
def _cpu_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


_CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn` (matmuls, convolutions, attention; elementwise work is not counted)."""
    with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
        fn()
    return counter.get_total_flops()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, CPU ticks of this process) or None where /proc is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system (idle iowait skipped) irq softirq steal
    return busy, int(own[11]) + int(own[12])  # utime + stime of all threads


def others_now(window: float = 0.25) -> float:
    """CPU cores other processes use right now (nan where /proc is missing)."""
    before = _cpu_ticks()
    time.sleep(window)
    after = _cpu_ticks()
    if not (before and after):
        return float("nan")
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / _HZ / window)


def wait_quiet(device: torch.device | None = None) -> None:
    """Wait until other processes use less than BUSY_CORES, within what is left of the PATIENCE budget (CPU
    work only: a GPU kernel does not share the CPU cores)."""
    if device is not None and device.type != "cpu":
        return
    start = time.perf_counter()
    while PATIENCE["waited"] + (time.perf_counter() - start) < PATIENCE["seconds"]:
        if not others_now() > BUSY_CORES:  # also stops waiting where it cannot be known (nan)
            break
    PATIENCE["waited"] += time.perf_counter() - start


@dataclass
class Timing:
    seconds: float  # median over the kept repeats
    others: float  # most CPU (cores) other processes used during a kept repeat; nan where unknown
    load: float  # 1-minute load average after the measurement
    repeats: int


def _time_once(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU cores other processes used meanwhile) of one call, after waiting for quiet."""
    wait_quiet(device)
    before = _cpu_ticks()
    start = time.perf_counter()
    fn()
    sync(device)
    wall = time.perf_counter() - start
    after = _cpu_ticks()
    others = float("nan")
    if before and after:
        others = max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / _HZ / wall)
    return wall, others


def _timing(kept: list[tuple[float, float]]) -> Timing:
    return Timing(
        seconds=statistics.median(w for w, _ in kept),
        others=max((o for _, o in kept), default=float("nan")),
        load=os.getloadavg()[0],
        repeats=len(kept),
    )


def measure(fn: Callable[[], object], device: torch.device, *, repeats: int, warmup: int = 1) -> Timing:
    """Median wall time of `fn` over `repeats` quiet repeats (see the module docstring)."""
    for _ in range(warmup):
        fn()
    sync(device)
    kept: list[tuple[float, float]] = []
    busy: list[tuple[float, float]] = []
    tries = 0
    while len(kept) < repeats and tries < repeats + EXTRA_TRIES:
        tries += 1
        wall, others = _time_once(fn, device)
        (busy if others > BUSY_CORES else kept).append((wall, others))
    if len(kept) < repeats:  # still busy: use the quietest of the busy repeats as well
        kept += sorted(busy, key=lambda r: r[1])[: repeats - len(kept)]
    return _timing(kept)


def measure_interleaved(
    fns: list[Callable[[], object]], device: torch.device, *, repeats: int
) -> list[Timing]:
    """Median times of several variants timed in turn (A B C A B C ...), so that a machine whose speed drifts
    over minutes (a shared VM does, unseen by the load figures) weighs on every variant alike. No warm-up."""
    runs: list[list[tuple[float, float]]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, kept in zip(fns, runs, strict=True):
            kept.append(_time_once(fn, device))
    return [_timing(kept) for kept in runs]


class Others:
    """CPU cores other processes used while the block ran (for measurements `measure` does not time)."""

    def __enter__(self) -> Others:
        self.start, self.ticks = time.perf_counter(), _cpu_ticks()
        return self

    def __exit__(self, *exc) -> None:
        wall, after = time.perf_counter() - self.start, _cpu_ticks()
        self.cores = float("nan")
        if self.ticks and after:
            self.cores = max(0.0, ((after[0] - self.ticks[0]) - (after[1] - self.ticks[1])) / _HZ / wall)
        self.timing = Timing(seconds=wall, others=self.cores, load=os.getloadavg()[0], repeats=1)


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc), so that RSS growth shows what the next block allocates."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak resident memory (bytes) of this process while the block runs, sampled every 2 ms, and the peak CUDA
    allocation. `rss_peak - rss_before` is what the block added."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss_before = self.rss_peak = 0
        self.cuda_peak = None

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.rss_peak = max(self.rss_peak, self.rss())
            self._stop.wait(0.002)

    def __enter__(self) -> PeakMemory:
        _trim_heap()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.rss_before = self.rss_peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.rss_peak = max(self.rss_peak, self.rss())
        if self.device.type == "cuda":
            self.cuda_peak = torch.cuda.max_memory_allocated(self.device)


def gemm_call(n: int, dtype: torch.dtype, device: torch.device) -> tuple[Callable[[], None], int]:
    """A call of (n x n) @ (n x n) matmuls and its FLOPs (on a GPU, enough of them to be timed)."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    inner = 1 if device.type == "cpu" else max(1, int(2e13 // (2 * n**3)))
    out = torch.empty(n, n, device=device, dtype=dtype)

    def run() -> None:
        for _ in range(inner):
            torch.matmul(a, b, out=out)

    return run, 2 * n**3 * inner


def gemm_rate(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> tuple[float, Timing]:
    """FLOP/s of an (n x n) @ (n x n) matmul: the machine's own ceiling for the dense work a step does."""
    run, flops = gemm_call(n, dtype, device)
    timing = measure(run, device, repeats=repeats, warmup=2)
    return flops / timing.seconds, timing


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return ""
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return " ".join(flag for flag in wanted if flag in flags)


def machine(device: torch.device) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        open_clip_version = version("open_clip_torch")
    except PackageNotFoundError:
        open_clip_version = "not installed"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "CPU": f"{cpu_model()} ({cpu_flags() or 'flags unknown'})",
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "torch threads": f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op",
        "memory": _memory(),
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (MKL {torch.backends.mkl.is_available()}, "
        f"oneDNN {torch.backends.mkldnn.is_available()})",
        "open_clip": open_clip_version,
        "GPU": "none",
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device if device.type == "cuda" else 0)
        info["GPU"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    return info


def _memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            total = int(f.readline().split()[1]) * 1024
        return f"{total / 2**30:.1f} GiB"
    except OSError:
        return "unknown"
