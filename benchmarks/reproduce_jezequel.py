r"""Jezequel et al. (G+J, G, J), GeoTrans and MHRot side by side on real one-vs-all data, at a budget this CPU affords.

  JAXAD_DATA_DIR=DIR python benchmarks/reproduce_jezequel.py --dataset=cifar10 --classes=1,3,8 --seeds=1,2

Every method gets the same trunk (`--depth`, `--width`; the papers use WRN-16-4, GeoTrans WRN-10-4), the same
`--train_limit` normal images, `--test_limit` test images and the same number of *transformed training images*:
`--epochs` passes for the 13-copy G+J model (10 copies for G, 3 for J, which the ablation keeps at the same epochs),
13/4 as many for MHRot (4 copies per image) and 13 times as many for GeoTrans (1 copy per image), each with the
recipe's own optimizer, batch size and a schedule spread over its budget. Results are appended after every run to
--out (JSON, resumable) and written beside it as a markdown table with the papers' values.
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
# (method, score) -> dataset -> AUROC (%): a list = per class (Jezequel et al. Table 3, CIFAR-10), a float = the
# paper's mean over all classes (Tables 2 and 4); absent = not reported.
PAPER = {
    ("G+J", "multitask"): {"cifar10": [75.1, 96.3, 84.8, 74.2, 91.1, 89.9, 88.7, 95.5, 94.7, 91.9],
                           "cifar100": 85.8, "fashion_mnist": 92.8, "mnist": 96.0},
    ("G", "multitask"): {"cifar100": 83.6},
    ("J", "multitask"): {"cifar100": 80.1},
    ("GeoTrans", "dirichlet"): {"cifar10": [74.7, 95.7, 78.1, 72.4, 87.8, 87.8, 83.4, 95.5, 93.3, 91.3],
                                "cifar100": 84.7, "fashion_mnist": 92.6, "mnist": 96.9},
    ("MHRot", "mhrot"): {"cifar100": 83.6, "fashion_mnist": 92.5, "mnist": 95.2},
}
SSL_CONFIG = {"cifar10": "ssl_cifar10", "cifar100": "ssl_cifar100", "fashion_mnist": "ssl_fmnist", "mnist": "ssl_mnist"}
# name -> (config, its arguments, scorers to record, transformed copies per image and epoch)
METHODS = {
    "G+J": ("ssl", "tasks=geometric+jigsaw", ("multitask", "geometric", "jigsaw"), 13),
    "G": ("ssl", "tasks=geometric", ("multitask",), 10),
    "J": ("ssl", "tasks=jigsaw", ("multitask",), 3),
    "GeoTrans": ("geotrans_cifar10", "", ("dirichlet", "simplified"), 1),
    "MHRot": ("mhrot_cifar10", "", ("mhrot",), 4),
}


def config_for(method, dataset, k, seed, args):
  name, extra, _, copies = METHODS[method]
  if name == "ssl":
    spec = f"{REPO}/configs/{SSL_CONFIG[dataset]}.py:normal_class={k},seed={seed},{extra}"
  else:
    spec = f"{REPO}/configs/{name}.py:normal_class={k},seed={seed},dataset={dataset}"
  c = load_config(spec)
  c.model.update(depth=args.depth, width=args.width)
  c.data.update(train_limit=args.train_limit, test_limit=args.test_limit)
  # The same number of transformed training images as G+J's `epochs` passes of 13 copies (G and J: same epochs).
  c.train.epochs = args.epochs if name == "ssl" else max(1, round(args.epochs * 13 / copies))
  c.objective.dirichlet_limit = args.train_limit
  c.threshold.limit = args.threshold_limit
  c.log_every_steps = 20
  return c


def train_img_per_s(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rates = [r["img_per_s"] for r in map(json.loads, f) if r.get("stage") == "train" and "img_per_s" in r]
  return statistics.median(rates[1:] or rates) if rates else None


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--dataset", default="cifar10", choices=sorted(SSL_CONFIG))
  p.add_argument("--classes", default="1,3,8")
  p.add_argument("--seeds", default="1,2")
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--depth", type=int, default=10)
  p.add_argument("--width", type=int, default=2)
  p.add_argument("--train_limit", type=int, default=1000)
  p.add_argument("--test_limit", type=int, default=1000)
  p.add_argument("--threshold_limit", type=int, default=100)
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--workdir", default="workdirs/reproduce_jezequel")
  p.add_argument("--out", default="")
  args = p.parse_args()
  out = args.out or f"benchmarks/results/jezequel_{args.dataset}.json"
  results = []
  if os.path.exists(out):  # resume a partial sweep
    with open(out) as f:
      results = json.load(f)["runs"]
  done = {(r["method"], r["normal_class"], r["seed"]) for r in results}
  for seed in map(int, args.seeds.split(",")):
    for k in map(int, args.classes.split(",")):
      for method in args.methods.split(","):
        if (method, k, seed) in done:
          continue
        config = config_for(method, args.dataset, k, seed, args)
        workdir = os.path.join(args.workdir, args.dataset, f"{method}_c{k}_s{seed}")
        t0 = time.time()
        summary = train.train_and_evaluate(config, workdir)
        results.append({
            "method": method, "dataset": args.dataset, "normal_class": k, "seed": seed,
            "auroc": {s: summary[f"test/{s}/auroc"] for s in METHODS[method][2]},
            "eer": {s: summary[f"test/{s}/eer"] for s in METHODS[method][2]},
            "budget": {"trunk": f"WRN-{args.depth}-{args.width}", "train_images": args.train_limit,
                       "test_images": args.test_limit, "epochs": config.train.epochs,
                       "batch_size": config.train.batch_size},
            "wall_s": time.time() - t0, "train_img_per_s": train_img_per_s(workdir)})
        write(out, results)


def paper_value(method, scorer, dataset, k):
  v = PAPER.get((method, scorer), {}).get(dataset)
  if v is None:
    return "n/a"
  return f"{v[k]:.1f}" if isinstance(v, list) else f"{v:.1f} (mean of all classes)"


def write(out, results):
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump({"runs": results}, f, indent=2)
  rows = ["| dataset | class | method (score) | seeds | AUROC % jaxad (mean ± std) | AUROC % paper | budget |",
          "|---|---|---|---|---|---|---|"]
  groups = {}
  for r in results:
    for scorer, a in r["auroc"].items():
      groups.setdefault((r["dataset"], r["normal_class"], r["method"], scorer), []).append((a, r["budget"]))
  order = list(METHODS)
  for (dataset, k, method, scorer), rs in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1], order.index(g[0][2]),
                                                                             g[0][3])):
    a = [100 * x for x, _ in rs]
    b = rs[0][1]
    std = statistics.pstdev(a) if len(a) > 1 else 0.0
    rows.append(f"| {dataset} | {k} | {method} ({scorer}) | {len(a)} | {statistics.mean(a):.1f} ± {std:.1f} | "
                f"{paper_value(method, scorer, dataset, k)} | {b['trunk']}, {b['train_images']} imgs x "
                f"{b['epochs']} ep |")
  summary = summary_rows(results)
  with open(os.path.splitext(out)[0] + ".md", "w") as f:
    f.write("\n".join(summary) + "\n\n" + "\n".join(rows) + "\n")
  print("\n".join(summary), flush=True)


def summary_rows(results):
  """One row per method (its main score), one column per class: jaxad mean ± std over seeds / the paper's value."""
  dataset = results[0]["dataset"]
  classes = sorted({r["normal_class"] for r in results})
  head = [f"class {k}: jaxad / paper" for k in classes]
  rows = [f"| {dataset}: method (score) | " + " | ".join(head) + " | mean of these classes: jaxad / paper |",
          "|---" * (len(classes) + 2) + "|"]
  for method, (_, _, scorers, _) in METHODS.items():
    scorer = scorers[0]
    cells, means, papers = [], [], []
    for k in classes:
      a = [100 * r["auroc"][scorer] for r in results if r["method"] == method and r["normal_class"] == k]
      if not a:
        cells.append("-")
        continue
      p = PAPER.get((method, scorer), {}).get(dataset)
      paper = p[k] if isinstance(p, list) else None
      papers.append(paper)
      means.append(statistics.mean(a))
      std = statistics.pstdev(a) if len(a) > 1 else 0.0
      cells.append(f"{statistics.mean(a):.1f} ± {std:.1f} (n={len(a)}) / {'n/a' if paper is None else paper}")
    if not means:
      continue
    p = PAPER.get((method, scorer), {}).get(dataset)
    if isinstance(p, list) and None not in papers:
      paper_mean = f"{statistics.mean(papers):.1f}"
    else:
      paper_mean = "n/a" if p is None else f"{p:.1f} (all classes)"
    rows.append(f"| {method} ({scorer}) | " + " | ".join(cells) + f" | **{statistics.mean(means):.1f}** / {paper_mean} |")
  return rows


if __name__ == "__main__":
  main()
