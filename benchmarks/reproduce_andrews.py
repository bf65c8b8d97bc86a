r"""Andrews et al. (2016) Table 3, MNIST tasks 1-4, with the weights that exist on this machine.

  JAXAD_DATA_DIR=DIR python benchmarks/reproduce_andrews.py --backbones=vgg_f_random,wrn_ssl [--trials=0,1,2]

MatConvNet's ImageNet VGG-F / VGG-M files cannot be downloaded here, so this is **not a reproduction** of Table 3:
* `vgg_f_random`: configs/andrews_vggf_mnist.py with weights=random: VGG-F's architecture, 224x224 inputs, random
  weights: the floor the paper's ImageNet features should beat;
* `wrn_ssl`: a small trained network as a transferred source: a WRN-10-1 trained on CIFAR-10 class 1 (automobile)
  by Jezequel et al.'s multi-task self-supervision (`workdirs/reproduce_jezequel/cifar10/G+J_c1_s1`, made by
  benchmarks/reproduce_jezequel.py), features 'block3' and 'pool' of its trunk; digits replicated to RGB, resized to
  32x32 and scaled to [-1, 1] as that run's images were.
Everything else is the paper's protocol: 2,048 normal training images, 512 + 512 test images fixed across the 3
trials, unit-length features, linear one-class SVMs, AUROC averaged over 21 values of nu in [0.01, 0.99].
Workdirs: `workdirs/reproduce_andrews/<backbone>/task<t>_trial<k>`; results: benchmarks/results/andrews_mnist.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from jaxad import train  # noqa: E402
from jaxad.config import import_sibling  # noqa: E402

# Table 3 (mean over 3 trials), VGG-F and VGG-M, per MNIST task: {layer: AUROC}.
PAPER = {
    "VGG-F": {1: dict(P5=0.9382, FC6=0.8494, FC7=0.8395, FC8=0.8604), 2: dict(P5=0.8833, FC6=0.8948, FC7=0.9074,
                                                                             FC8=0.9239),
              3: dict(P5=0.8500, FC6=0.7207, FC7=0.7000, FC8=0.6652), 4: dict(P5=0.7662, FC6=0.7151, FC7=0.7357,
                                                                             FC8=0.7240)},
    "VGG-M": {1: dict(P5=0.8933, FC6=0.7519, FC7=0.7904, FC8=0.7925), 2: dict(P5=0.8543, FC6=0.8179, FC7=0.8461,
                                                                             FC8=0.8313),
              3: dict(P5=0.8196, FC6=0.5604, FC7=0.5704, FC8=0.5679), 4: dict(P5=0.7593, FC6=0.5110, FC7=0.5201,
                                                                             FC8=0.4911)},
    "GS (raw pixels)": {1: 0.5809, 2: 0.5089, 3: 0.4321, 4: 0.4315},
}
WRN_SOURCE = "workdirs/reproduce_jezequel/cifar10/G+J_c1_s1"


def config_for(backbone: str, task: int, trial: int):
  path = os.path.join(REPO, "configs", "andrews_vggf_mnist.py")
  c = import_sibling(path, "andrews_vggf_mnist").get_config(f"task={task},trial={trial},weights=random")
  if backbone == "wrn_ssl":
    with open(os.path.join(REPO, WRN_SOURCE, "config.json")) as f:
      model = json.load(f)["model"]
    c.model.update(name="wide_resnet", weights=os.path.join(REPO, WRN_SOURCE, "checkpoints", "train", "output"),
                   input_scaling="tf", input_size=32,
                   kwargs={k: v for k, v in model.items() if k in ("depth", "width", "dropout", "head_dropout",
                                                                   "conv_init")})
    c.model.kwargs.heads = (("translate_x", 3), ("translate_y", 3), ("rotate", 4), ("jigsaw", 3))
    c.objective.layers = ("block3", "pool")
  return c


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--backbones", default="vgg_f_random,wrn_ssl")
  p.add_argument("--tasks", default="1,2,3,4")
  p.add_argument("--trials", default="0,1,2")
  p.add_argument("--workdir", default="workdirs/reproduce_andrews")
  p.add_argument("--out", default="benchmarks/results/andrews_mnist.json")
  args = p.parse_args()
  runs = []
  if os.path.exists(args.out):  # resume a partial sweep
    with open(args.out) as f:
      runs = json.load(f)["runs"]
  done = {(r["backbone"], r["task"], r["trial"]) for r in runs}
  for backbone in args.backbones.split(","):
    for task in map(int, args.tasks.split(",")):
      for trial in map(int, args.trials.split(",")):
        if (backbone, task, trial) in done:
          continue
        config = config_for(backbone, task, trial)
        t0 = time.time()
        summary = train.train_and_evaluate(config, os.path.join(args.workdir, backbone, f"task{task}_trial{trial}"))
        runs.append({"backbone": backbone, "task": task, "trial": trial, "wall_s": time.time() - t0,
                     "auroc": {layer: summary[f"test/{layer}/ocsvm_auroc"] for layer in config.objective.layers}})
        write(args.out, runs)


def write(out, runs):
  with open(out, "w") as f:
    json.dump({"runs": runs}, f, indent=1)
  lines = ["| backbone (weights) | layer | MNIST-1 | MNIST-2 | MNIST-3 | MNIST-4 | mean |", "|---|---|---|---|---|---|---|"]
  for backbone in dict.fromkeys(r["backbone"] for r in runs):
    layers = list(next(r for r in runs if r["backbone"] == backbone)["auroc"])
    for layer in layers:
      cells, means = [], []
      for task in (1, 2, 3, 4):
        a = [r["auroc"][layer] for r in runs if r["backbone"] == backbone and r["task"] == task]
        if a:
          means.append(statistics.mean(a))
          std = statistics.pstdev(a) if len(a) > 1 else 0.0
          cells.append(f"{statistics.mean(a):.4f} ± {std:.4f} (n={len(a)})")
        else:
          cells.append("-")
      mean = f"**{statistics.mean(means):.4f}**" if len(means) == 4 else "-"
      lines.append(f"| {backbone} | {layer} | " + " | ".join(cells) + f" | {mean} |")
  for net in ("VGG-F", "VGG-M"):
    for layer in ("P5", "FC6", "FC7", "FC8"):
      vals = [PAPER[net][t][layer] for t in (1, 2, 3, 4)]
      lines.append(f"| paper: {net} (ImageNet) | {layer} | " + " | ".join(f"{v:.4f}" for v in vals)
                   + f" | {statistics.mean(vals):.4f} |")
  vals = [PAPER["GS (raw pixels)"][t] for t in (1, 2, 3, 4)]
  lines.append("| paper: GS (raw pixels) | - | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {statistics.mean(vals):.4f} |")
  with open(os.path.splitext(out)[0] + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines), flush=True)


if __name__ == "__main__":
  main()
