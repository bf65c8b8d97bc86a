"""What the per-layer benchmarks (lenet_layers.py, conv_layers.py) share: jaxad and PyTorch timed in child processes
of their own (each framework's thread pool alone on the cores), alternating in each round and swapping order between
rounds, with the 1-minute load average recorded before each child.

A script defines `measure_jax(calls) -> dict` and `measure_torch(calls) -> dict` (milliseconds per call, plus any
other JSON), adds `add_arguments` to its parser, hands `--_child` runs to `child` and calls `alternate` otherwise.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_arguments(parser: argparse.ArgumentParser, out: str, calls: int) -> None:
  parser.add_argument("--out", default=out)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--calls", type=int, default=calls, help="timed calls per measurement and round")
  parser.add_argument("--_child", dest="child", choices=("jax", "torch"), help=argparse.SUPPRESS)


def median_ms(fn: Callable[[], object], n: int) -> float:
  """Median milliseconds of `n` calls of `fn`, after two untimed ones (compilation, allocations, oneDNN's caches)."""
  fn()
  fn()
  times = []
  for _ in range(n):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times) * 1e3


def child(framework: str, calls: int, model_name: str, measure_jax: Callable[[int], dict],
          measure_torch: Callable[[int], dict]) -> None:
  """In a child process: prints the JSON of `measure_jax(calls)` run with the XLA flags jaxad sets for
  `model_name`, or of `measure_torch(calls)` with torch's threads on every core."""
  if framework == "jax":
    sys.path.insert(0, REPO)
    from jaxad import xla_flags  # pylint: disable=g-import-not-at-top
    xla_flags.apply_cpu_defaults(model_name)
    print(json.dumps(measure_jax(calls)))
  else:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(os.cpu_count())
    print(json.dumps(measure_torch(calls)))


def alternate(script: str, rounds: int, calls: int, child_args: tuple[str, ...] = ()) -> dict[str, list[dict]]:
  """{'jax': [...], 'torch': [...]}: each round's child output of `script --_child FRAMEWORK --calls CALLS
  *child_args`, with the load average before it as 'load_avg_1min'."""
  results = {"jax": [], "torch": []}
  for r in range(rounds):
    for framework in (("jax", "torch") if r % 2 == 0 else ("torch", "jax")):
      load = os.getloadavg()[0]
      proc = subprocess.run([sys.executable, script, "--_child", framework, "--calls", str(calls), *child_args],
                            capture_output=True, text=True, check=True)
      results[framework].append({"load_avg_1min": load, **json.loads(proc.stdout.strip().splitlines()[-1])})
  return results


def medians(rounds: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
  """Per framework, the median over rounds of every timed (float) entry but the load average."""
  return {fw: {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], float)
               and k != "load_avg_1min"} for fw, rs in rounds.items()}


def machine() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  return {"cpus": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
          "torch": torch.__version__}


def write_json(results: dict, out: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(results, f, indent=2)
