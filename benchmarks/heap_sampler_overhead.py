r"""What timing under `peers.measure.HeapSampler` did to a step: the same variant with and without the sampler.

  python benchmarks/heap_sampler_overhead.py --cases=lenet_ae:jaxad,lenet_ae:torch_channels_last,wrn:jaxad,\
wrn:torch_channels_last --rounds=2 --out=benchmarks/results/heap_sampler_overhead.json

Until this benchmark, peers_benchmark.py timed every round with the sampler polling glibc's `mallinfo2()` every 5 ms;
`mallinfo2()` walks each malloc arena's free lists holding that arena's lock, so the threads of the step it watched
waited to allocate. Each case (a peers workload and one of its variants) runs in a process of its own, built as
peers_benchmark.py builds it, and alternates `--steps` steps without and with the sampler in each of `--rounds`
rounds; the JSON has every round, the medians and the time of one `mallinfo2()` call on that process's heap.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def child(name: str, variant: str, steps: int, rounds: int) -> dict:
  sys.path[:0] = [HERE, REPO]
  import peers_benchmark  # pylint: disable=g-import-not-at-top
  from peers import measure  # pylint: disable=g-import-not-at-top

  w = peers_benchmark.build_workload(name)
  run = w.variants[variant]
  run(1)  # warm-up
  seconds = lambda out: out["seconds"] if isinstance(out, dict) else out
  out = {"without": [], "with": [], "mallinfo2_ms": []}
  for _ in range(rounds):
    out["without"].append(steps * w.images / seconds(run(steps)))
    sampler = measure.HeapSampler()
    with sampler:
      out["with"].append(steps * w.images / seconds(run(steps)))
    t0 = time.perf_counter()
    for _ in range(10):
      sampler.live_mib()
    out["mallinfo2_ms"].append((time.perf_counter() - t0) / 10 * 1e3)
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--cases", default="lenet_ae:jaxad,lenet_ae:torch_channels_last",
                      help="comma-separated WORKLOAD:VARIANT pairs of benchmarks/peers_benchmark.py")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--steps", type=int, default=0, help="steps per timing; 0: the workload's peers default")
  parser.add_argument("--out", default=os.path.join(HERE, "results", "heap_sampler_overhead.json"))
  parser.add_argument("--_child", nargs=4, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._child:  # pylint: disable=protected-access
    name, variant, steps, rounds = args._child  # pylint: disable=protected-access
    print(json.dumps(child(name, variant, int(steps), int(rounds))))
    return
  sys.path.insert(0, HERE)
  import layer_timing  # pylint: disable=g-import-not-at-top
  from peers_benchmark import DEFAULT_STEPS  # pylint: disable=g-import-not-at-top
  results = {"command": " ".join(["python", *sys.argv]), "cases": {}}
  for case in args.cases.split(","):
    name, variant = case.split(":")
    steps = args.steps or DEFAULT_STEPS[name]
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--_child", name, variant, str(steps), str(args.rounds)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
      sys.exit(f"{case} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    med = {k: statistics.median(v) for k, v in r.items()}
    results["cases"][case] = {"steps": steps, "load_avg_1min_before": load, "rounds": r, "medians": med,
                              "with_over_without": med["with"] / med["without"]}
    print(f"{case:32s} img/s without {med['without']:7.1f}  with {med['with']:7.1f}  "
          f"x{med['with'] / med['without']:.2f}  mallinfo2 {med['mallinfo2_ms']:.1f} ms", flush=True)
  layer_timing.write_json({"machine": layer_timing.machine(), **results}, args.out)


if __name__ == "__main__":
  main()
