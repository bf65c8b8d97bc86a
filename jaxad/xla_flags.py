"""XLA flags jaxad sets for CPU runs; call `apply_cpu_defaults()` before jax is imported.

On jaxlib 0.10 CPU, convolutions go through YNNPACK; fusing it per dot instead of per region gave +35-65% on the
LeNet autoencoder and encoder steps (benchmarks/lenet_throughput.py). Only CPU compilations read this flag. A user's
own XLA_FLAGS win, and JAXAD_XLA_CPU_DEFAULTS=0 turns this off.
"""

import os

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=individual_dot",)


def apply_cpu_defaults() -> None:
  if os.environ.get("JAXAD_XLA_CPU_DEFAULTS", "1") == "0":
    return
  current = os.environ.get("XLA_FLAGS", "")
  extra = [f for f in CPU_FLAGS if f.split("=")[0] not in current]
  if extra:
    os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()
