r"""jaxad's training steps at two revisions, alternating in one run: what a change did to speed.

  python benchmarks/revisions_ab.py --base=HEAD --workloads=lenet_ae,lenet_encoder,adib,wrn --rounds=2 \
      --out=benchmarks/results/revisions_ab.json

`--base` (any git revision) is checked out into a temporary worktree; the other side is this working tree, edits
included. Each (revision, workload) runs in a process of its own with the workload's XLA flags, as
`peers_benchmark.py` builds jaxad's side of it (the config's real jitted step on random images), timing `--steps`
steps after a warm-up; the two revisions alternate within each round and swap order between rounds. The JSON has
every round, with the 1-minute load average before it, and the medians.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _git(*args: str) -> str:
  """`git -C REPO <args>`'s stdout, stripped; raises where git fails."""
  return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True, check=True).stdout.strip()


def child(root: str, name: str, steps: int) -> dict:
  """img/s of jaxad's `name` workload from the tree at `root`."""
  sys.path[:0] = [os.path.join(root, "benchmarks"), root]
  import peers_benchmark  # pylint: disable=g-import-not-at-top
  from jaxad import xla_flags  # pylint: disable=g-import-not-at-top
  import jaxad  # pylint: disable=g-import-not-at-top

  if not os.path.abspath(jaxad.__file__).startswith(os.path.abspath(root)):
    raise RuntimeError(f"imported {jaxad.__file__}, not the tree at {root}")
  xla_flags.apply_cpu_defaults(peers_benchmark.WORKLOAD_MODELS.get(name, ""))
  args = argparse.Namespace(workloads=name, rounds=1, steps=steps, quick=False, normal_class=3, isolate=False,
                            max_others_cores=0.25, out="", md="")
  w = peers_benchmark.BUILDERS[name](args)
  if w.unit != "step":
    raise ValueError(f"{name} is timed per epoch; this benchmark compares steps")
  run = w.variants["jaxad"]
  run(1)  # compilation
  run(2)  # warm-up
  out = run(steps)
  seconds = out["seconds"] if isinstance(out, dict) else out
  return {"img_per_s": steps * w.images / seconds, "xla_flags": os.environ.get("XLA_FLAGS", "")}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--base", help="the git revision to compare this working tree with (required)")
  parser.add_argument("--workloads", default="lenet_ae,lenet_encoder,adib,wrn")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--out", default=os.path.join(HERE, "results", "revisions_ab.json"))
  parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._child:  # pylint: disable=protected-access
    root, name, steps = args._child  # pylint: disable=protected-access
    print(json.dumps(child(root, name, int(steps))))
    return
  if not args.base:
    parser.error("--base is required: the git revision to compare this working tree with, e.g. --base=HEAD")
  base, head = _git("rev-parse", args.base), _git("rev-parse", "HEAD")
  dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
  names = [n for n in args.workloads.split(",") if n]
  with tempfile.TemporaryDirectory() as tmp:
    base_tree = os.path.join(tmp, "base")
    _git("worktree", "add", "--detach", base_tree, base)
    trees = {"base": base_tree, "this": REPO}
    log = {name: {"base": [], "this": []} for name in names}
    try:
      for r in range(args.rounds):
        for name in names:
          for side in (("base", "this") if r % 2 == 0 else ("this", "base")):
            load = os.getloadavg()[0]
            env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # each workload's own flags
            proc = subprocess.run([sys.executable, __file__, "--_child", trees[side], name, str(args.steps)],
                                  capture_output=True, text=True, env=env, check=False)
            if proc.returncode:
              raise RuntimeError(f"{name} at {side} ({trees[side]}) failed:\n{proc.stderr[-3000:]}")
            log[name][side].append({"load_avg_1min": load, **json.loads(proc.stdout.strip().splitlines()[-1])})
            print(f"round {r + 1} {name:14s} {side:4s} {log[name][side][-1]['img_per_s']:8.1f} img/s  "
                  f"(load {load:.2f})", flush=True)
    finally:
      subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", base_tree], check=False)
  results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
             "base": base, "this": head + (" + uncommitted edits" if dirty else ""), "steps": args.steps,
             "rounds": log, "medians": {}}
  for name, sides in log.items():
    med = {side: statistics.median(x["img_per_s"] for x in runs) for side, runs in sides.items()}
    results["medians"][name] = {**med, "this_over_base": med["this"] / med["base"]}
    print(f"{name:14s} base {med['base']:8.1f}  this {med['this']:8.1f} img/s  x{med['this'] / med['base']:.2f}")
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
