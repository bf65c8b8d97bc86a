"""XLA flags jaxad sets for CPU runs, per model family; call `apply_cpu_defaults(model_name)` before JAX's first
computation (importing jax is fine: XLA reads XLA_FLAGS when its backend starts, at the first computation).

On jaxlib 0.10 CPU, XLA can hand dots, convolutions and fusions to YNNPACK; handing it each dot gave +30-32% on the
LeNet autoencoder and encoder steps (benchmarks/lenet_throughput.py, which also measures the levers that lost there:
adding YNN's eltwise,reduce fusion -15-17%, XLA's oneDNN thunks -4-6%, no tree reductions -8%, YNN's convolutions
-45-51%; XNNPACK's and oneDNN's convolution fusions within 2%). The same eltwise,reduce fusion speeds the residual
nets up (benchmarks/peers_benchmark.py: ResNet26 ADIB x1.62, ADRA x1.54, WRN-16-4 x1.19, for about twice XLA's
temporaries; README), so `FAMILY_FLAGS` gives it to those families alone: `jaxad.main` applies the flags of
`config.model.name` once the config is loaded. Only CPU compilations read these flags. A user's own XLA_FLAGS win,
and JAXAD_XLA_CPU_DEFAULTS=0 turns this off.
"""

import os
import sys

_YNN = "--xla_cpu_experimental_ynn_fusion_type"
CPU_FLAGS = (f"{_YNN}=individual_dot",)
# model.name prefix -> its flags instead of CPU_FLAGS (benchmarks/peers_benchmark.py measures each family with them).
FAMILY_FLAGS = {"resnet26": (f"{_YNN}=individual_dot,eltwise,reduce",),
                "wide_resnet": (f"{_YNN}=individual_dot,eltwise,reduce",)}


def cpu_flags(model_name: str = "") -> tuple[str, ...]:
  """The flags jaxad uses for models named `model_name` ('' = any other)."""
  return next((f for prefix, f in FAMILY_FLAGS.items() if model_name.startswith(prefix)), CPU_FLAGS)


def apply_cpu_defaults(model_name: str = "") -> None:
  """Adds `cpu_flags(model_name)` to XLA_FLAGS, except flags the user set; a no-op once JAX's backend has started
  (XLA read its flags then) and with JAXAD_XLA_CPU_DEFAULTS=0."""
  if os.environ.get("JAXAD_XLA_CPU_DEFAULTS", "1") == "0":
    return
  if "jax" in sys.modules:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    if xla_bridge.backends_are_initialized():
      return
  current = os.environ.get("XLA_FLAGS", "")
  extra = [f for f in cpu_flags(model_name) if f.split("=")[0] not in current]
  if extra:
    os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()
