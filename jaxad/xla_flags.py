"""XLA flags jaxad sets for CPU runs; call `apply_cpu_defaults()` before jax is imported.

On jaxlib 0.10 CPU, convolutions go through YNNPACK; fusing it per dot instead of per region gave +30-32% on the
LeNet autoencoder and encoder steps (benchmarks/lenet_throughput.py, which also measures the levers that lost there:
adding YNN's eltwise,reduce fusion -15-17%, XLA's oneDNN thunks -4-6%, no tree reductions -8%; eltwise,reduce gains
+20% on the ResNet26 ADIB step, README). Only CPU compilations read this flag. A user's own XLA_FLAGS win, and
JAXAD_XLA_CPU_DEFAULTS=0 turns this off.
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
