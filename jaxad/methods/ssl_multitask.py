"""Jezequel et al.: fine-grained anomaly detection by multi-task self-supervision on a WideResNet.

One shared trunk (WRN-16-4) and one dense softmax head per pretext task, each with dropout 0.3 (paper section 3):

* 'translate_x' / 'translate_y': which of the horizontal / vertical shifts (0, +s, -s) was applied (3 classes each;
  s = 8 px at 32x32, `jaxad.data.pretext.TRANSLATIONS`), reflect-101 border as ss-ood's MHRot;
* 'rotate': which 90-degree rotation (4 classes);
* 'jigsaw': which of k fixed permutations of a 3x3 grid of patches, cut with a margin and a small random offset
  (`jaxad.data.pretext.jigsaw`; k = 3, the paper's best).

The three geometric heads together are the paper's 10-way geometric layer (3 + 3 + 4 outputs, MHRot's layout: the
same parameters as one 10-output dense layer sliced per task). Every training image is seen under every transform of
every task (paper Eq. 7): the loss of an example is the sum over tasks and transforms of the cross-entropy of the
task's head on the transformed copy (`jaxad.losses.multi_task_cross_entropy`).

Score (paper Eqs. 5-6, negated so that higher = more anomalous): for each task, the sum over its transforms of the
head's softmax probability of the true transform; the score is minus their mean over tasks
(`jaxad.scores.transform_likelihood`). Each task's own score and the geometric tasks' mean are reported beside it;
`objective.tasks` picks the paper's ablation (Table 4): 'geometric+jigsaw' (G+J), 'geometric' (G) or 'jigsaw' (J).
At test time the jigsaw patches are cut at the centre of their cells (no random offset), so scores are deterministic.

Where the paper is silent jaxad follows ss-ood's MHRot (reference_implementations.md section 5.1) and says so in
configs/ssl_cifar10.py.

References:
  Jezequel, Vu, Beaudet, Histace, "Fine-grained anomaly detection via multi-task self-supervision", 2021.
  Hendrycks, Mazeika, Kadavath, Song, "Using Self-Supervised Learning Can Improve Model Robustness and
  Uncertainty", NeurIPS 2019.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxad import losses, scores
from jaxad.data import pretext
from jaxad.errors import ConfigError
from jaxad.methods.base import Method, Scorer, TrainPhase, apply_train, default_init
from jaxad.models import compute_kwargs, get_model

GEOMETRIC = ("translate_x", "translate_y", "rotate")
TASK_SETS = {"geometric+jigsaw": GEOMETRIC + ("jigsaw",), "geometric": GEOMETRIC, "jigsaw": ("jigsaw",)}

# views(images [B, H, W, C], rng or None) -> {task: [T, B, H, W, C]}: every transformed copy, transform j = label j.
Views = Callable[[jax.Array, jax.Array | None], Mapping[str, jax.Array]]


def wide_resnet(config: ml_collections.ConfigDict, heads: Mapping[str, int]):
  """The config's WideResNet (`config.model`, with its `dtype` and `remat`) with one dense head per task."""
  m = config.model
  return get_model(m.name)(depth=m.depth, width=m.width, heads=tuple(heads.items()), dropout=m.dropout,
                           head_dropout=m.head_dropout, conv_init=m.conv_init, **compute_kwargs(m))


def translation_set(t: ml_collections.ConfigDict, shape) -> tuple[int, int, int]:
  """The shifts (0, +s, -s) of `objective.translation`, label = position (s = t.shift; 0: a quarter of the image
  side, ss-ood's 8 at 32 and 56 at 224)."""
  if t.border not in pretext.BORDERS:
    raise ConfigError(f"objective.translation.border must be one of {pretext.BORDERS}, got {t.border!r}.")
  shift = int(t.shift) or pretext.translation_shifts(int(shape[0]))[1]
  if not 0 < shift < min(shape[:2]):
    raise ConfigError(f"objective.translation.shift must be in (0, {min(shape[:2])}) for {shape[0]}x{shape[1]} "
                      f"images, got {t.shift}.")
  return (0, shift, -shift)


def geometric_views(shifts: tuple[int, int, int], border: str) -> Views:
  """Each geometric task's copies: x-shifts, y-shifts (`shifts`) and the four rotations."""

  def views(images, rng):
    del rng
    return {"translate_x": pretext.translations_x_all(images, shifts, border=border),
            "translate_y": pretext.translations_y_all(images, shifts, border=border),
            "rotate": pretext.rotations_all(images)}

  return views


def stack_views(parts: Mapping[str, jax.Array]) -> tuple[jax.Array, dict[str, tuple[int, int, int]]]:
  """{task: [T, B, ...]} -> one batch [sum_t T * B, ...] and each task's (start row, T, B) in it."""
  rows, layout, start = [], {}, 0
  for task, v in parts.items():
    t, b = v.shape[:2]
    rows.append(v.reshape(t * b, *v.shape[2:]))
    layout[task] = (start, t, b)
    start += t * b
  return jnp.concatenate(rows), layout


def task_logits(logits: Mapping[str, jax.Array], layout) -> dict[str, jax.Array]:
  """Each task's head on its own copies only: {task: [T, B, K]}."""
  return {task: logits[task][start:start + t * b].reshape(t, b, -1) for task, (start, t, b) in layout.items()}


def per_transform_cross_entropy(logits: Mapping[str, jax.Array]) -> jax.Array:
  """Paper Eq. 7: sum over tasks and transforms of CE(head_task(T_j(x)), j), per example [B].

  Args:
    logits: {task: [T, B, K]}, copy j of each example labelled j.
  """
  flat, labels = {}, {}
  for task, lg in logits.items():
    for j in range(lg.shape[0]):
      flat[f"{task}/{j}"] = lg[j]
      labels[f"{task}/{j}"] = np.full(lg.shape[1], j, np.int32)
  return losses.multi_task_cross_entropy(flat, labels)


def eval_probs(model, variables, images, views: Views) -> dict[str, jax.Array]:
  """Softmax of each task's head on each of its copies, {task: [B, T, K]}, one transform at a time (eval memory
  stays that of one batch whatever the number of transforms)."""
  out = {}
  for task, copies in views(images, None).items():
    def one(x, task=task):
      return jax.nn.softmax(model.apply(variables, x, train=False)[0][task], axis=-1)
    out[task] = jnp.swapaxes(jax.lax.map(one, copies), 0, 1)
  return out


def flip_augment(enabled: bool):
  """Random horizontal flips of the original images before their transformed copies are made (None when off)."""
  if not enabled:
    return None

  def augment(batch, rng):
    flips = jax.random.bernoulli(rng, 0.5, (batch["image"].shape[0],))
    return {**batch, "image": pretext.hflip(batch["image"], flips)}

  return augment


def method(config: ml_collections.ConfigDict, spec) -> Method:
  """[Train('train'): the multi-task network] and the scorers 'multitask', 'geometric' and one per task."""
  obj = config.objective
  if obj.tasks not in TASK_SETS:
    raise ConfigError(f"objective.tasks must be one of {sorted(TASK_SETS)}, got {obj.tasks!r}.")
  tasks = TASK_SETS[obj.tasks]
  shape = tuple(spec.shape)
  heads = {"translate_x": 3, "translate_y": 3, "rotate": 4}
  geometric = geometric_views(translation_set(obj.translation, shape), obj.translation.border)
  j = obj.jigsaw
  if "jigsaw" in tasks:
    if min(shape[:2]) // j.grid <= j.margin:
      raise ConfigError(f"objective.jigsaw: {shape[0]}x{shape[1]} images in a {j.grid}x{j.grid} grid leave cells of "
                        f"{min(shape[:2]) // j.grid} px, not more than the margin {j.margin}.")
    permutations = jnp.asarray(pretext.jigsaw_permutations(j.k, grid=j.grid, seed=j.seed))
    heads["jigsaw"] = int(j.k)
  heads = {t: heads[t] for t in tasks}

  def views(images, rng):
    out = dict(geometric(images, rng)) if GEOMETRIC[0] in tasks else {}  # the task sets hold all three or none
    if "jigsaw" in tasks:
      # Patches cut at a random offset in their cell for training, at its centre (offsets None) for scoring.
      offsets = None if rng is None else pretext.jigsaw_offsets(jax.random.fold_in(rng, 2), images.shape[0],
                                                                 grid=j.grid, margin=j.margin)
      out["jigsaw"] = pretext.jigsaw_all(images, permutations, offsets, grid=j.grid, margin=j.margin, fill=0.0)
    return out

  model = wide_resnet(config, heads)

  def loss_fn(params, ctx, batch):
    x, layout = stack_views(views(batch["image"], ctx.rng))
    (logits, _), batch_stats = apply_train(model, params, ctx, x, rngs={"dropout": jax.random.fold_in(ctx.rng, 1)})
    per_task = task_logits(logits, layout)
    metrics = {f"acc/{t}": jnp.mean(jnp.argmax(lg, -1) == jnp.arange(lg.shape[0])[:, None])
               for t, lg in per_task.items()}
    return per_transform_cross_entropy(per_task).mean(), (batch_stats, None, metrics)

  def score_fn(variables, extra, batch):
    del extra
    probs = eval_probs(model, variables, batch["image"], views)
    true = {t: jnp.arange(p.shape[1]) for t, p in probs.items()}
    out = {"multitask": scores.transform_likelihood(probs, true)}
    out.update({t: scores.transform_likelihood({t: probs[t]}, {t: true[t]}) for t in probs})
    if set(GEOMETRIC) <= set(probs) and len(probs) > len(GEOMETRIC):
      out["geometric"] = scores.transform_likelihood({t: probs[t] for t in GEOMETRIC}, {t: true[t] for t in GEOMETRIC})
    return out

  names = ["multitask", *tasks] + (["geometric"] if len(tasks) > len(GEOMETRIC) else [])
  return Method(
      phases=[TrainPhase("train", model, config.train, loss_fn, mix={"normal": config.train.batch_size},
                         init=default_init(model), augment=flip_augment(config.augment.flip))],
      scorers={n: Scorer(score_fn, phase="train", key=n) for n in names})
