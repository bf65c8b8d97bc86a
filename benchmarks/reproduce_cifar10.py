r"""Deep SVDD (one-class, soft) and MOCCA (soft, hard) on real CIFAR-10 one-vs-rest at a reduced budget.

  JAXAD_DATA_DIR=DIR python benchmarks/reproduce_cifar10.py --classes=1,3,8 --seeds=1,2 --ae_epochs=10 --epochs=10

For each (class, seed, paper) the autoencoder is pretrained once and both boundaries start from that same checkpoint
(checkpoints/pretrain, copied into the second run's workdir, where the trainer finds the 'pretrain' phase's output
and skips it; the 'center' fit phase runs again, on the same weights and images). The step schedules' milestones
and the soft-boundary warm-up keep the recipes' proportions (AE 250/350, encoder 50/150, warm-up 10/150 of the
epochs).
`--warmups=10,3` runs the soft boundary once per warm-up (absolute epochs) instead of the scaled one, all from the
same pretrained autoencoder as the hard run (the MOCCA-soft question of README: the authors' CIFAR trainer hard-codes
10 warm-up epochs). Results are written after every run to --out (JSON) and beside it as a markdown table with the
papers' values.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from jaxad import xla_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

xla_flags.apply_cpu_defaults()

from jaxad import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxad.config import load_config  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# MOCCA paper Table I (mean over 10 seeds): Deep SVDD from Ruff et al. 2018, MOCCA its own.
PAPER = {
    ("dsvdd", "soft"): [.617, .648, .495, .560, .599, .621, .678, .652, .756, .710],
    ("dsvdd", "hard"): [.617, .659, .508, .591, .609, .657, .677, .673, .759, .731],
    ("mocca", "soft"): [.626, .746, .575, .578, .615, .663, .674, .721, .791, .773],
    ("mocca", "hard"): [.660, .705, .524, .601, .609, .684, .671, .685, .792, .758],
}
RUNS = (("dsvdd", ("hard", "soft")), ("mocca", ("soft", "hard")))


def budget(config, ae_epochs, epochs):
  # The recipes' schedule='step' (lr x0.1 at each milestone), with the milestones scaled to the budget.
  config.pretrain.epochs = ae_epochs
  config.pretrain.schedule_kwargs.milestones = (max(1, round(ae_epochs * 250 / 350)),)
  config.train.epochs = epochs
  config.train.schedule_kwargs.milestones = (max(1, round(epochs * 50 / 150)),)
  config.objective.warmup_epochs = max(1, round(epochs * 10 / 150))
  return config


def stage_img_per_s(workdir, phase):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:  # records keep the key "stage" (= the phase name)
    rates = [r["img_per_s"] for r in map(json.loads, f) if r["stage"] == phase]
  return statistics.median(rates[1:] or rates)  # the first record includes compilation


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--classes", default="1,3,8")
  p.add_argument("--seeds", default="1,2")
  p.add_argument("--ae_epochs", type=int, default=10)
  p.add_argument("--epochs", type=int, default=10)
  p.add_argument("--papers", default="dsvdd,mocca", help="which of RUNS to run")
  p.add_argument("--warmups", default="",
                 help="soft-boundary warm-up epochs, comma-separated: one soft run per value (default: the recipes' "
                      "10/150 of --epochs); hard runs do not depend on it")
  p.add_argument("--workdir", default="workdirs/reproduce_cifar10")
  p.add_argument("--out", default="benchmarks/results/cifar10_reduced.json")
  args = p.parse_args()
  results = []
  if os.path.exists(args.out):  # resume a partial sweep
    with open(args.out) as f:
      results = json.load(f)["runs"]
  # Records written before --warmups existed have no warmup_epochs: theirs was the scaled one.
  done = {(r["paper"], r["boundary"], r["normal_class"], r["seed"],
           r.get("warmup_epochs", max(1, round(r["epochs"] * 10 / 150)) if r["boundary"] == "soft" else None))
          for r in results}
  warmups = [int(w) for w in args.warmups.split(",") if w] or [None]
  for seed in map(int, args.seeds.split(",")):
    for k in map(int, args.classes.split(",")):
      for paper, boundaries in RUNS:
        if paper not in args.papers.split(","):
          continue
        first = None
        for boundary, warmup in [(b, w) for b in boundaries for w in (warmups if b == "soft" else [None])]:
          spec = f"{REPO}/configs/{paper}_cifar10.py:normal_class={k},seed={seed},boundary={boundary}"
          config = budget(load_config(spec), args.ae_epochs, args.epochs)
          if warmup is not None:
            config.objective.warmup_epochs = warmup
          warmup = config.objective.warmup_epochs if boundary == "soft" else None
          workdir = os.path.join(args.workdir, f"{paper}_{boundary}_c{k}_s{seed}"
                                 + (f"_w{warmup}" if args.warmups and warmup is not None else ""))
          if (paper, boundary, k, seed, warmup) in done:
            first = first or workdir
            continue
          if first and not os.path.exists(os.path.join(workdir, "config.json")):
            if not os.path.exists(os.path.join(workdir, "checkpoints", "pretrain")):
              shutil.copytree(os.path.join(first, "checkpoints", "pretrain"),
                              os.path.join(workdir, "checkpoints", "pretrain"))
            # The copied phase stores the first run's config, which differs in keys the pretraining never reads
            # (boundary, warm-up): this run's own config.json is the reference jaxad checks a resume against.
            with open(os.path.join(workdir, "config.json"), "w") as f:
              f.write(config.to_json())
          t0 = time.time()
          summary = train.train_and_evaluate(config, workdir)
          results.append({
              "paper": paper, "boundary": boundary, "normal_class": k, "seed": seed,
              "auroc": summary["test/hypersphere/auroc"], "paper_auroc": PAPER[(paper, boundary)][k],
              "ae_epochs": args.ae_epochs, "epochs": args.epochs, "warmup_epochs": warmup,
              "wall_s": time.time() - t0,
              "train_img_per_s": stage_img_per_s(workdir, "train"),
              "pretrain_img_per_s": None if first else stage_img_per_s(workdir, "pretrain"),
              "pretrained_ae_from": first})
          first = first or workdir
          write(args.out, results)


def write(out, results):
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump({"runs": results}, f, indent=2)
  rows = ["| method | class | seeds | AUROC jaxad (mean ± std) | AUROC paper |", "|---|---|---|---|---|"]
  groups = {}
  for r in results:
    groups.setdefault((r["paper"], r["boundary"], r.get("warmup_epochs") or 0, r["normal_class"]), []).append(r)
  for (paper, boundary, warmup, k), rs in sorted(groups.items()):
    a = [r["auroc"] for r in rs]
    std = statistics.pstdev(a) if len(a) > 1 else 0.0
    name = f"{paper} {boundary}" + (f" (warm-up {warmup})" if boundary == "soft" else "")
    rows.append(f"| {name} | {k} | {len(a)} | {statistics.mean(a):.3f} ± {std:.3f} | "
                f"{PAPER[(paper, boundary)][k]:.3f} |")
  with open(os.path.splitext(out)[0] + ".md", "w") as f:
    f.write("\n".join(rows) + "\n")
  print("\n".join(rows), flush=True)


if __name__ == "__main__":
  main()
