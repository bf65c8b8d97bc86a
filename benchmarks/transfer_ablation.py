r"""ADIB and ADRA from a CIFAR-100 stand-in source vs from random init, CIFAR-10 one-vs-rest, at a reduced budget.

  JAXAD_DATA_DIR=DIR python benchmarks/transfer_ablation.py --classes=1,3,8 --seeds=1,2

The direction of Deecke et al.'s ablation a_1 (no transfer) vs ADIB / ADRA (Table 4; their Table 5 gives the full
one-vs-rest numbers from ImageNet-32 weights). Without ImageNet weights on this machine, the source is the local
stand-in `configs/pretrain_resnet26_cifar100.py`, trained here for --pretrain_epochs epochs on --pretrain_limit
CIFAR-100 train images (it is written once to <workdir>/source_cifar100 and reused). Every AD run then trains for
--epochs epochs on --train_limit normal images (batches of 64 normal + 64 CIFAR-100 OE, the configs' recipe
otherwise, no lr milestones) and is scored on a fixed random --test_limit subset of the CIFAR-10 test set.

Results are written after every run to --out (JSON) and beside it as a markdown table with the paper's values.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from jaxad import xla_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

xla_flags.apply_cpu_defaults()

from jaxad import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxad.config import load_config  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# Deecke et al. 2021, Table 5 (one-vs-rest AUROC, ImageNet-32 source, full budget), per CIFAR-10 class.
PAPER = {"adra": [.990, .997, .975, .963, .989, .977, .996, .996, .995, .994],
         "adib": [.992, .998, .986, .970, .993, .982, .996, .998, .996, .995]}


def median_img_per_s(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rates = [r["img_per_s"] for r in map(json.loads, f)]
  return statistics.median(rates[1:] or rates)  # the first record includes compilation


def pretrain_source(args) -> str:
  workdir = os.path.join(args.workdir, "source_cifar100")
  source = os.path.join(workdir, "source")
  if os.path.isdir(source):
    return source
  config = load_config(f"{REPO}/configs/pretrain_resnet26_cifar100.py:epochs={args.pretrain_epochs}")
  config.data.train_limit, config.data.test_limit = args.pretrain_limit, args.test_limit
  config.train.schedule, config.train.schedule_kwargs = "constant", {}  # no lr milestones
  t0 = time.time()
  summary = train.train_and_evaluate(config, workdir)
  record = {"train_images": args.pretrain_limit, "epochs": args.pretrain_epochs, "minutes": (time.time() - t0) / 60,
            "img_per_s": median_img_per_s(workdir), **summary}
  with open(os.path.join(workdir, "pretrain.json"), "w") as f:
    json.dump(record, f, indent=2)
  return source


def write_table(path, results, source_info):
  classes = sorted({r["normal_class"] for r in results})
  lines = [f"Stand-in source: ResNet26 trained on {source_info.get('train_images')} CIFAR-100 images for "
           f"{source_info.get('epochs')} epoch(s): test top-1 {source_info.get('test/top1', float('nan')):.3f} "
           f"({source_info.get('minutes', float('nan')):.0f} min). AUROC: mean ± std over seeds (n runs).", "",
           "| method | init | " + " | ".join(f"class {k}" for k in classes) + " | mean | paper Table 5 (same classes) |",
           "|---|---|" + "---|" * (len(classes) + 2)]
  for method in ("adib", "adra"):
    for init in ("stand-in", "random"):
      rows = [r for r in results if r["method"] == method and r["init"] == init]
      if not rows:
        continue
      cells = []
      for k in classes:
        vals = [r["auroc"] for r in rows if r["normal_class"] == k]
        std = f" ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else ""
        cells.append(f"{statistics.mean(vals):.3f}{std} ({len(vals)})" if vals else "-")
      paper = statistics.mean(PAPER[method][k] for k in classes)
      lines.append(f"| {method.upper()} | {init} | " + " | ".join(cells)
                   + f" | **{statistics.mean(r['auroc'] for r in rows):.3f}** | {paper:.3f} |")
  rates = {m: statistics.median(r["img_per_s"] for r in results if r["method"] == m) for m in ("adib", "adra")
           if any(r["method"] == m for r in results)}
  lines += ["", "Median training img/s over the runs (64 + 64 batches, data pipeline included): "
            + ", ".join(f"{m.upper()} {v:.1f}" for m, v in rates.items()) + "."]
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--classes", default="1,3,8")
  p.add_argument("--seeds", default="1,2")
  p.add_argument("--methods", default="adib,adra")
  p.add_argument("--pretrain_limit", type=int, default=16384)
  p.add_argument("--pretrain_epochs", type=int, default=1)
  p.add_argument("--train_limit", type=int, default=1024)
  p.add_argument("--epochs", type=int, default=1)
  p.add_argument("--test_limit", type=int, default=1000)
  p.add_argument("--workdir", default="workdirs/transfer_ablation")
  p.add_argument("--out", default="benchmarks/results/transfer_ablation.json")
  p.add_argument("--table_only", action="store_true", help="only rewrite the markdown table from --out")
  args = p.parse_args()
  if args.table_only:
    with open(args.out) as f:
      saved = json.load(f)
    write_table(os.path.splitext(args.out)[0] + ".md", saved["runs"], saved["source"])
    return
  source = pretrain_source(args)
  with open(os.path.join(os.path.dirname(source), "pretrain.json")) as f:
    source_info = json.load(f)
  results = []
  if os.path.exists(args.out):  # resume a partial sweep
    with open(args.out) as f:
      results = json.load(f)["runs"]
  done = {(r["method"], r["init"], r["normal_class"], r["seed"]) for r in results}
  for seed in map(int, args.seeds.split(",")):
    for k in map(int, args.classes.split(",")):
      for method in args.methods.split(","):
        for init, src in (("stand-in", os.path.abspath(source)), ("random", "random")):
          if (method, init, k, seed) in done:
            continue
          config = load_config(f"{REPO}/configs/{method}_cifar10.py:normal_class={k},seed={seed},source={src}")
          config.data.train_limit, config.data.test_limit = args.train_limit, args.test_limit
          config.train.epochs = args.epochs
          config.train.schedule, config.train.schedule_kwargs = "constant", {}  # no lr milestones
          workdir = os.path.join(args.workdir, f"{method}_{init}_c{k}_s{seed}")
          t0 = time.time()
          summary = train.train_and_evaluate(config, workdir)
          results.append({"method": method, "init": init, "normal_class": k, "seed": seed,
                          "auroc": summary["test/oe_sigmoid/auroc"], "minutes": (time.time() - t0) / 60,
                          "img_per_s": median_img_per_s(workdir)})
          print(json.dumps(results[-1]), flush=True)
          with open(args.out, "w") as f:
            json.dump({"args": vars(args), "source": source_info, "runs": results}, f, indent=2)
          write_table(os.path.splitext(args.out)[0] + ".md", results, source_info)


if __name__ == "__main__":
  main()
