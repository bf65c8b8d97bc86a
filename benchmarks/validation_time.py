r"""What the checks made before training cost at a run's start: config validation, data-file checks, data checks.

  JAXAD_DATA_DIR=DIR python benchmarks/validation_time.py --out=benchmarks/results/validation_time.json

* `validate(config)` (jaxad/validate.py), per config file in configs/ (default arguments and runlocal), median of
  20 calls each;
* the checks of a dataset file as it is read (`jaxad.data.sources._check_split`: dtype, shape, empty, constant
  images, label range) on the real CIFAR-10 train (50,000 images) and test splits, median of 5;
* `validate_data` + `validate_batches` (empty normal class, a test source that cannot give an AUROC, a batch larger
  than the data) on the built MOCCA CIFAR-10 run, median of 5; beside it the time `train.build` takes to load the
  data and build the method, which these checks follow.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from jaxad import train, validate  # noqa: E402
from jaxad.config import import_sibling  # noqa: E402
from jaxad.data import sources  # noqa: E402


def median_ms(fn, n):
  times = []
  for _ in range(n):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return 1000 * statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "validation_time.json"))
  args = parser.parse_args()
  per_config, skipped = {}, []
  for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
    name = os.path.basename(path)
    if name == "common.py":
      continue
    module = import_sibling(path, os.path.splitext(name)[0])
    for arg in ("", "runlocal=True"):
      try:
        config = module.get_config(arg)
        validate.validate(config)
      except Exception:  # pylint: disable=broad-except  (needs arguments: folders, weights; or has no runlocal)
        skipped.append(f"{name}:{arg}")
        continue
      per_config[f"{name}:{arg}"] = median_ms(lambda c=config: validate.validate(c), 20)
  arrays = sources.load("cifar10", source="npz")
  check = {split: median_ms(lambda s=split: sources._check_split(  # pylint: disable=protected-access
      "cifar10.npz", s, getattr(arrays, f"x_{s}"), getattr(arrays, f"y_{s}"), (32, 32, 3), "", 10), 5)
      for split in ("train", "test")}
  config = import_sibling(os.path.join(REPO, "configs", "mocca_cifar10.py"), "mocca_cifar10").get_config(
      "normal_class=3")
  t = time.perf_counter()
  method, srcs = train.build(config)
  build_s = time.perf_counter() - t
  data_ms = median_ms(lambda: (validate.validate_data(config, srcs), validate.validate_batches(config, method, srcs)),
                      5)
  timings = {"median_over_configs": statistics.median(per_config.values()), "max": max(per_config.values()),
             "per_config": per_config, "skipped_need_arguments": skipped}
  out = {"command": "python benchmarks/validation_time.py", "validate_config_ms": timings,
         "cifar10_file_checks_ms": check, "validate_data_and_batches_ms": data_ms, "build_s_for_comparison": build_s}
  out["total_added_ms_cifar10"] = out["validate_config_ms"]["per_config"]["mocca_cifar10.py:"] + sum(
      check.values()) + data_ms
  print(json.dumps({k: v for k, v in out.items() if k != "validate_config_ms"}, indent=1))
  print("validate(config): median over configs %.2f ms, max %.2f ms" % (out["validate_config_ms"][
      "median_over_configs"], out["validate_config_ms"]["max"]))
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
