"""What a method gives the trainer: a list of phases plus its scorers.

A method (one file per paper under `jaxad/methods/`) turns its config into a `Method`:

* `TrainPhase`: a model, its optimizer config, a pure `loss(params, ctx, batch)` and the mix of named sources its
  batches are drawn from (e.g. 64 'normal' + 64 'oe'); jitted, data-parallel, checkpointed, resumable.
* `FitPhase`: host-side work without gradients (hypersphere centers, a template, loading source weights, a
  one-class SVM), checkpointed like a training phase and skipped once done.
* `Scorer`s: `(variables, extra, batch) -> [B]` or `[B, P]` scores (higher = more anomalous) of one phase's output,
  with a named reduction (`jaxad.reductions`) applied before metrics; or logits / features for the classification
  and one-class SVM evaluators.

E.g. Deep SVDD = [Train(autoencoder), Fit(center), Train(encoder)], ADIB = [Fit(source weights), Train], Andrews =
[Fit(backbone weights)] + a features scorer. The trainer (`jaxad.train`) owns everything else: data, mesh, optimizer,
jit, checkpoints, logging, evaluation; it knows no method, protocol or dataset by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Mapping, Sequence

import flax.linen as nn
import flax.struct
import jax
import ml_collections

Batch = Mapping[str, jax.Array]
Variables = Mapping[str, Any]  # {'params': ..., 'batch_stats': ...}


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What a method needs to know of the data to build its networks: the input shape and the number of classes."""
  shape: tuple[int, ...]
  num_classes: int = 0

  @classmethod
  def of(cls, sources: Mapping[str, Any]) -> "DataSpec":
    """The spec of a run's named sources (`jaxad.data.Source`s): that of its 'normal' images after preprocessing."""
    normal = sources["normal"]
    return cls(tuple(int(s) for s in normal.shape), int(normal.num_classes))


@dataclasses.dataclass(frozen=True)
class Output:
  """What a phase leaves for the phases after it and for the scorers: network variables and the method's extra state.

  `extra` is any pytree of arrays (centers, radii, theta_0 for L2-SP, a Fisher, a template). Saved under
  `<workdir>/checkpoints/<phase>/output` when the phase is done.
  """
  variables: Variables
  extra: Any = dataclasses.field(default_factory=dict)


@flax.struct.dataclass
class Context:
  """What a loss sees besides the parameters: never the trainer's TrainState, so losses stay pure and testable.

  Attributes:
    batch_stats: the model's BatchNorm statistics before this step.
    extra: the phase's extra state (e.g. centers, radii, theta_0).
    step: the global step of the phase, int32 [].
    epoch: `step // steps_per_epoch`, int32 [].
    rng: a key for this step only, `fold_in(phase_key, step)`: dropout, random transforms.
  """
  batch_stats: Any
  extra: Any
  step: jax.Array
  epoch: jax.Array
  rng: jax.Array


# loss(params, ctx, batch) -> (loss [], (new_batch_stats, aux, metrics)): `aux` feeds `update_extra`, `metrics` is a
# dict of scalars to log.
Loss = Callable[[Any, Context, Batch], tuple[jax.Array, tuple[Any, Any, Mapping[str, jax.Array]]]]
Keep = Literal["last", "min_loss", "best_val"]


@dataclasses.dataclass(frozen=True)
class TrainPhase:
  """A jitted training phase.

  Attributes:
    name: checkpoints go to `<workdir>/checkpoints/<name>`; metrics are tagged with it.
    model: a Linen module.
    optim: the phase's config: `epochs` and the optimizer keys of `jaxad.optim.make_optimizer` (optimizer by name,
      lr, coupled weight decay, schedule by name, trainable rules).
    loss: pure `(params, ctx, batch) -> (loss, (batch_stats, aux, metrics))`.
    mix: examples per step from each named source, e.g. {'normal': 64, 'oe': 64}; the global batch is their
      concatenation in this order. An epoch is one pass over the first source.
    init: `(rng, sample_batch, previous_outputs) -> Output`: the initial variables and extra; weight transfer
      between phases lives here. Default: `model.init(rng, sample['image'], train=False)` and no extra.
    augment: optional jitted `(batch, rng) -> batch`, run on the device before the loss.
    update_extra: optional `(extra, aux, ctx) -> extra`, run inside the jitted step after the update (e.g. radii).
    keep: which weights the phase leaves: 'last', 'min_loss' (the epoch with the lowest mean loss) or 'best_val'
      (the epoch whose `val_scorer` has the highest AUROC on the 'val' source).
    val_scorer: the scorer `keep='best_val'` uses.
    drop_remainder: True: each epoch is one fresh permutation of the first source, its last partial batch dropped;
      False: every source is an endless stream of permutations and an epoch is ceil(N / per_step) steps (OE mixing).
  """
  name: str
  model: nn.Module
  optim: ml_collections.ConfigDict
  loss: Loss
  mix: Mapping[str, int]
  init: Callable[[jax.Array, Batch, Mapping[str, Output]], Output] | None = None
  augment: Callable[[Batch, jax.Array], Batch] | None = None
  update_extra: Callable[[Any, Any, Context], Any] | None = None
  keep: Keep = "last"
  val_scorer: str = ""
  drop_remainder: bool = True

  @property
  def batch_size(self) -> int:
    return sum(self.mix.values())


@dataclasses.dataclass(frozen=True)
class FitContext:
  """What a fit phase can use.

  Attributes:
    previous: the outputs of the phases before it, by name (`last` is the latest).
    sources: the run's named data sources (`jaxad.data.Source`).
    predict: `predict(fn, variables, source) -> {name: np.ndarray [N, ...]}` runs a jitted `fn(variables, batch)`
      over every example of a source (a name or a `Source`) in eval batches on the mesh.
    rng: a key for this phase.
    workdir: the run's workdir (a fit phase may write files there, e.g. exported weights).
  """
  previous: Mapping[str, Output]
  sources: Mapping[str, Any]
  predict: Callable[..., Mapping[str, Any]]
  rng: jax.Array
  workdir: str

  @property
  def last(self) -> Output:
    return list(self.previous.values())[-1]


@dataclasses.dataclass(frozen=True)
class FitPhase:
  """A host-side phase without gradients: `fit(ctx) -> Output`, saved once and skipped when the run resumes."""
  name: str
  fit: Callable[[FitContext], Output]


Phase = TrainPhase | FitPhase


@dataclasses.dataclass(frozen=True)
class Scorer:
  """A jittable `fn(variables, extra, batch)` applied to the output of phase `phase`, in eval mode.

  Attributes:
    kind: 'score': [B] or [B, P] anomaly scores, higher = more anomalous (the anomaly evaluator); 'logits':
      [B, K] class logits (the classification evaluator); 'features': [B, D], or 'nu_scores': [B, P] scores of P
      fitted one-class SVMs, one per nu (the one-class SVM evaluator).
    reduction: a `jaxad.reductions` name applied to 'score' outputs before metrics, e.g. 'max_patches'.
    key: '' when `fn` returns one array; else `fn` returns a dict of arrays and this scorer is its entry `key`.
      Scorers with the same `fn` and `phase` are computed in one pass over the data (e.g. the total and the
      per-task scores of a multi-task network share its forward passes over every transformed copy).
  """
  fn: Callable[[Variables, Any, Batch], jax.Array | Mapping[str, jax.Array]]
  phase: str
  kind: Literal["score", "logits", "features", "nu_scores"] = "score"
  reduction: str = "none"
  key: str = ""

  def on_output(self, output: tuple[Variables, Any], batch: Batch):
    """`fn` on a (variables, extra) pair: the form `predict` maps over a source (one compilation per `fn`)."""
    variables, extra = output
    return self.fn(variables, extra, batch)

  @property
  def pass_id(self) -> tuple:
    """Scorers with equal `pass_id` share one pass over the data (`jaxad.evaluate.raw_scores`)."""
    return (self.fn, self.phase)


@dataclasses.dataclass(frozen=True)
class Method:
  phases: Sequence[Phase]
  scorers: Mapping[str, Scorer]

  def __post_init__(self):
    names = [p.name for p in self.phases]
    if len(set(names)) != len(names):
      raise ValueError(f"Phase names must be unique, got {names}.")
    for name, scorer in self.scorers.items():
      if scorer.phase not in names:
        raise ValueError(f"Scorer {name!r} scores phase {scorer.phase!r}, which is not one of {names}.")

  @property
  def source_names(self) -> tuple[str, ...]:
    """The named sources the training phases draw from, in first-use order."""
    out = []
    for phase in self.phases:
      if isinstance(phase, TrainPhase):
        out += [s for s in phase.mix if s not in out]
    return tuple(out)


def default_init(model: nn.Module) -> Callable[[jax.Array, Batch, Mapping[str, Output]], Output]:
  """`model.init` on the sample images in eval mode, no extra state."""

  def init(rng, sample, previous):
    del previous
    variables = model.init(rng, sample["image"], train=False)
    return Output({"params": variables["params"], "batch_stats": variables.get("batch_stats", {})})

  return init


def apply_train(model: nn.Module, params, ctx: Context, images, **kwargs):
  """`model.apply` in training mode with the context's BatchNorm statistics: `(outputs, new_batch_stats)`."""
  out, mutated = model.apply({"params": params, "batch_stats": ctx.batch_stats}, images, train=True,
                             mutable=["batch_stats"], **kwargs)
  return out, mutated.get("batch_stats", {})
