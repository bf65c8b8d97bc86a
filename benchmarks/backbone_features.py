r"""Andrews / Minhas backbones on this CPU: feature-extraction throughput and memory, and the one-class SVM fit cost.

  python benchmarks/backbone_features.py --out=benchmarks/results/backbone_features.json [--batch=32] [--rounds=3]

1. For each backbone at its input size (VGG-F / VGG-M 224, DenseNet-169 224, ResNet-152 224, Inception-V3 / V4 299,
   Male-5045 100x100x1), random weights (the forward costs the same as with pretrained ones): the jitted forward that
   `jaxad.methods.deep_features` runs (every feature of the net, in eval mode), on batches of `--batch` images,
   after one warm-up call; img/s is the median over `--rounds` timed calls. Memory: XLA's `memory_analysis()` of
   the compiled call (temporary buffers; arguments = weights + batch) and the process's peak RSS after it, each
   backbone in its own process so that peaks do not mix.
2. The one-class SVM fit: `deep_features.fit_linear_ocsvm` on 2,048 unit-length random features of each VGG-F layer's
   width (P5 9,216, FC6 / FC7 4,096, FC8 1,000) for the paper's 21 values of nu, and the time per nu; beside it
   scikit-learn's `OneClassSVM(kernel='linear')` on the same features (3 of the nus), the way that jaxad replaced.
   `--ocsvm_only` re-measures this part into an existing result file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

BACKBONES = {  # name: (registry name, kwargs, input size, channels)
    "vgg_f": ("vgg_f", {}, 224, 3),
    "vgg_m": ("vgg_m", {}, 224, 3),
    "densenet169": ("densenet169", {}, 224, 3),
    "resnet152": ("resnet152", {}, 224, 3),
    "inception_v3": ("inception_v3", {}, 299, 3),
    "inception_v4": ("inception_v4", {}, 299, 3),
    "male5045": ("male5045", {}, 100, 1),
}


def one_backbone(name: str, batch: int, rounds: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxad.models import count_params, get_model  # pylint: disable=g-import-not-at-top

  registry, kwargs, size, channels = BACKBONES[name]
  model = get_model(registry)(**kwargs)
  x = jax.random.uniform(jax.random.key(0), (batch, size, size, channels))
  variables = jax.jit(lambda r, s: model.init(r, s, train=False))(jax.random.key(1), x[:1])
  fn = jax.jit(lambda v, b: model.apply(v, b, train=False))
  compiled = fn.lower(variables, x).compile()
  mem = compiled.memory_analysis()
  jax.block_until_ready(fn(variables, x))
  times = []
  for _ in range(rounds):
    t = time.perf_counter()
    jax.block_until_ready(fn(variables, x))
    times.append(time.perf_counter() - t)
  _, feats = fn(variables, x[:1])
  return {"backbone": name, "input": [size, size, channels], "params": count_params(variables["params"]),
          "batch": batch, "img_per_s": batch / statistics.median(times), "rounds_s": times,
          "xla_temp_mib": mem.temp_size_in_bytes / 2**20, "xla_argument_mib": mem.argument_size_in_bytes / 2**20,
          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          "features": {k: list(v.shape[1:]) for k, v in feats.items()}}


def svm_fits(n: int = 2048, linear_nus: int = 3) -> list[dict]:
  """jaxad's fit (precomputed Gram matrix) for all 21 nus, and scikit-learn's linear-kernel fit, the textbook way,
  for `linear_nus` of them (nu = 0.01, 0.5, 0.99: it is 15-30x slower), on the same features."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from sklearn.svm import OneClassSVM  # pylint: disable=g-import-not-at-top
  from jaxad.methods import deep_features  # pylint: disable=g-import-not-at-top

  out = []
  rng = np.random.default_rng(0)
  for layer, dim in (("P5", 9216), ("FC6", 4096), ("FC7", 4096), ("FC8", 1000)):
    x = np.abs(rng.normal(size=(n, dim))).astype(np.float32)  # non-negative, like post-ReLU / pooled activations
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = time.perf_counter()
    deep_features.fit_linear_ocsvm(x, deep_features.DEFAULT_NUS)
    total = time.perf_counter() - t
    nus = (0.01, 0.5, 0.99)[:linear_nus]
    t = time.perf_counter()
    for nu in nus:
      OneClassSVM(kernel="linear", nu=nu).fit(x.astype(np.float64))
    linear = (time.perf_counter() - t) / len(nus)
    out.append({"layer": layer, "dim": dim, "images": n, "nus": len(deep_features.DEFAULT_NUS), "fit_s": total,
                "per_nu_s": total / len(deep_features.DEFAULT_NUS), "sklearn_linear_kernel_per_nu_s": linear,
                "sklearn_linear_kernel_nus_timed": list(nus)})
    print(json.dumps(out[-1]), flush=True)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "backbone_features.json"))
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--only", default="", help="internal: measure one backbone in this process")
  parser.add_argument("--ocsvm_only", action="store_true", help="only (re)measure the SVM fits into --out")
  args = parser.parse_args()
  if args.only:
    print(json.dumps(one_backbone(args.only, args.batch, args.rounds)))
    return
  if args.ocsvm_only:  # add the SVM fit times to an existing result file
    with open(args.out) as f:
      out = json.load(f)
    out["ocsvm"] = svm_fits()
    with open(args.out, "w") as f:
      json.dump(out, f, indent=1)
    return
  results = []
  for name in BACKBONES:
    proc = subprocess.run([sys.executable, __file__, f"--only={name}", f"--batch={args.batch}",
                           f"--rounds={args.rounds}"], capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
      sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
    results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(json.dumps({k: v for k, v in results[-1].items() if k != "features"}), flush=True)
  out = {"command": "python benchmarks/backbone_features.py " + " ".join(sys.argv[1:]), "backbones": results,
         "ocsvm": svm_fits(), "load_avg_1min_at_end": os.getloadavg()[0]}
  with open(args.out, "w") as f:
    json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
