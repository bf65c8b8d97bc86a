"""Measurement utilities shared by the side-by-side benchmarks (benchmarks/ssl_throughput.py, peers_benchmark.py).

* `matmul_peak_gflops`: the machine's attainable fp32 peak, the best of `jnp.dot` and `torch.mm` on square matrices.
* `cpu_snapshot` / `others_cores`: the CPU cores that *other* processes kept busy during a timed block (/proc/stat's
  busy time minus this process's own CPU time), and the cores the hypervisor stole; the load average cannot tell
  this process's threads from others'.
* `HeapSampler`: the peak of the bytes live in glibc malloc while a block runs (XLA's CPU buffers and torch's tensors
  both come from it); `heap_of` runs a variant once under it, untimed.
* `rounds_of`: variants timed in alternating rounds (the order rotating each round), with the load average before
  each round, `others_cores` and `steal_cores`, after one untimed call per variant that measures its heap;
  `kept_rounds` / `median_of_kept` drop the rounds that other processes disturbed.

Nothing here imports jax or torch at import time: `matmul_peak_gflops` does, when called, so callers can set
XLA_FLAGS first.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Sequence

# A round counts as undisturbed when other processes kept at most this many cores busy on average during it.
DEFAULT_MAX_OTHERS_CORES = 0.25


def matmul_peak_gflops(sizes=(2048, 4096), reps: int = 3) -> dict:
  """Best fp32 GFLOP/s of square matmuls in jax and in torch (each the fastest of `reps` after a warm-up, over
  `sizes`): the machine's attainable fp32 peak as the two frameworks' GEMMs reach it."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  out = {"jax": 0.0, "torch": 0.0}
  dot = jax.jit(jnp.dot)
  for n in sizes:
    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    ja, ta = jnp.asarray(a), torch.from_numpy(a)
    for name, fn in (("jax", lambda: dot(ja, ja).block_until_ready()), ("torch", lambda: torch.mm(ta, ta))):
      fn()
      out[name] = max(out[name], 2 * n ** 3 / min(_timed(fn) for _ in range(reps)) / 1e9)
  return out


def _timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def load1() -> float:
  """The 1-minute load average (this process's own running threads count in it)."""
  return os.getloadavg()[0]


def cpu_snapshot() -> tuple[float, float, float, float]:
  """(wall s, busy CPU s of the whole machine, CPU s of this process, steal s) for `others_cores`."""
  with open("/proc/stat") as f:
    user, nice, system, _, _, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
  hz = os.sysconf("SC_CLK_TCK")
  own = resource.getrusage(resource.RUSAGE_SELF)
  return (time.perf_counter(), (user + nice + system + irq + softirq) / hz, own.ru_utime + own.ru_stime, steal / hz)


def others_cores(before, after, helper_cpu_s: float = 0.0) -> tuple[float, float]:
  """CPU cores that other processes kept busy between two `cpu_snapshot`s, and cores stolen by the hypervisor.

  `helper_cpu_s`: CPU seconds spent meanwhile by a process working for this one (a variant served by a child
  process), which is not "other" load either.
  """
  wall = after[0] - before[0]
  own = (after[2] - before[2]) + helper_cpu_s
  return (max(0.0, (after[1] - before[1]) - own) / wall, (after[3] - before[3]) / wall)


class _MallInfo2(ctypes.Structure):
  _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                              "uordblks", "fordblks", "keepcost")]


class HeapSampler:
  """Peak of the bytes live in glibc malloc (all arenas + mmapped blocks) while a block of code runs.

  XLA's CPU buffers and PyTorch's CPU tensors both come from malloc, so this sees either framework's working
  memory, live bytes only: unlike the resident set it does not keep what one framework freed and the allocator
  kept, which would hide the next variant's allocations in a shared process. A thread polls `mallinfo2()` every
  `interval` seconds; peaks shorter than that can be missed, which does not matter for a training step's
  activations (alive from the forward pass to the backward pass, seconds here).

  Never time under it: `mallinfo2()` walks every arena's free lists holding that arena's lock (2.4-28 ms a call on
  the peers steps' heaps), and the threads of the step it watches wait on those locks to allocate: the steps ran at
  0.45-0.78x their speed under it (benchmarks/heap_sampler_overhead.py). `heap_of` measures a separate, untimed
  call.
  """

  def __init__(self, interval: float = 0.005):
    self.interval = interval
    try:
      self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
      self._libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):  # not glibc >= 2.33: no heap figures
      self._libc = None
    self.start_mib = self.peak_mib = float("nan")

  def live_mib(self) -> float:
    if self._libc is None:
      return float("nan")
    m = self._libc.mallinfo2()
    return (m.uordblks + m.hblkhd) / 2**20

  def __enter__(self):
    self.start_mib = self.peak_mib = self.live_mib()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._poll, daemon=True)
    self._thread.start()
    return self

  def _poll(self):
    while not self._stop.wait(self.interval):
      self.peak_mib = max(self.peak_mib, self.live_mib())

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak_mib = max(self.peak_mib, self.live_mib())


def heap_of(run: Callable, n: int) -> tuple[float, float]:
  """(peak, added) MiB of live heap during one untimed `run(n)`; a variant served by a child process measures its
  own (`run.heap(n)`)."""
  if hasattr(run, "heap"):
    return run.heap(n)
  with HeapSampler() as heap:
    run(n)
  return heap.peak_mib, heap.peak_mib - heap.start_mib


def rounds_of(variants: dict[str, Callable], rounds: int, n: int, per_call: int) -> dict:
  """Alternating rounds, the order rotating each round; per variant: seconds and load average per round, and the
  heap of one untimed call before the rounds (`heap_of`).

  Args:
    variants: name -> `run(n)`, which does `n` units of work and returns their wall time in seconds, or a dict
      with that time under 'seconds' and any other per-round figures (logged under 'extra', one dict a round).
    rounds: rounds; in round r the order starts at variant r mod len(variants).
    n: the units of work per round passed to each `run`.
    per_call: items per unit (images per step) for the printed rate only.

  Returns:
    {name: {'seconds', 'load1', 'others_cores', 'steal_cores', 'extra'}: lists with one entry per round, and
    'heap_peak_mib', 'step_heap_mib': one-entry lists, the untimed call's}.
  """
  names = list(variants)
  log = {name: {"seconds": [], "load1": [], "others_cores": [], "steal_cores": [], "heap_peak_mib": [],
                "step_heap_mib": [], "extra": []} for name in names}
  for name in names:
    peak, added = heap_of(variants[name], n)
    log[name]["heap_peak_mib"].append(peak)
    log[name]["step_heap_mib"].append(added)
    print(f"  heap {name:20s} +{added:.0f} MiB (peak {peak:.0f} MiB, untimed)", flush=True)
  for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
      log[name]["load1"].append(load1())
      before = cpu_snapshot()
      out = variants[name](n)
      after = cpu_snapshot()
      extra = dict(out) if isinstance(out, dict) else {}
      # A variant served by a child process reports its own CPU time (this process is idle meanwhile).
      others, steal = others_cores(before, after, extra.pop("child_cpu_s", 0.0))
      log[name]["seconds"].append(float(extra.pop("seconds")) if isinstance(out, dict) else out)
      log[name]["extra"].append(extra)
      log[name]["others_cores"].append(others)
      log[name]["steal_cores"].append(steal)
      print(f"  round {r + 1}/{rounds} {name:20s} {per_call * n / log[name]['seconds'][-1]:8.2f} /s  load "
            f"{log[name]['load1'][-1]:.2f}  others {others:.2f} cores", flush=True)
  return log


def kept_rounds(others: Sequence[float], max_others_cores: float = DEFAULT_MAX_OTHERS_CORES) -> list[int]:
  """Indices of the rounds in which other processes kept at most `max_others_cores` cores busy on average.

  >>> kept_rounds([0.05, 1.2, 0.1])
  [0, 2]
  """
  return [i for i, c in enumerate(others) if c <= max_others_cores]


def median_of_kept(values: Sequence[float], kept: Sequence[int]) -> float:
  """The median over the kept rounds, or over all rounds when none was kept (callers flag that case).

  >>> median_of_kept([10.0, 1.0, 12.0], [0, 2])
  11.0
  """
  chosen = [values[i] for i in kept] or list(values)
  return statistics.median(chosen)


def write_results(results: dict, out: str, t_start: float) -> None:
  """Adds the peak RSS, the load at the end and the wall time since `t_start` to `results`; writes it to `out`."""
  results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  results["machine"]["load_avg_at_end"] = list(os.getloadavg())
  results["wall_s"] = time.perf_counter() - t_start
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(results, f, indent=2)
