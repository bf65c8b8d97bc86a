"""MHRot (Hendrycks et al. 2019): rotation and translation heads, scored over all 36 joint transforms.

A WideResNet trunk with three dense heads on the pooled features: 'rotate' (4 classes: k of rot90),
'translate_x' and 'translate_y' (3 classes each: shifts (0, +s, -s), s = 8 px at 32x32, reflect-101 border as
ss-ood's cv2 calls; `jaxad.data.pretext`). As in ss-ood's one-class code, every training image gets one random
(x, y) translation and then all four rotations of it; each of the four copies is labelled with its rotation and
the shared translation, and the loss of a copy is the mean of the three heads' cross-entropies (so an example's
loss is the mean over its four copies).

Score (ss-ood's `test.py`, Jezequel et al. Eq. 4): for each of the 36 (rotation, x-shift, y-shift) combinations,
the sum of the three heads' softmax probabilities of the true labels; summed over the 36 and negated, so higher =
more anomalous (ss-ood counts the OOD images as positives in the same way). That is 36 forward passes per image,
against 13 for Jezequel et al.'s per-task scoring (`jaxad.methods.ssl_multitask`). The per-head sums over the 36
copies are reported too.

References:
  Hendrycks, Mazeika, Kadavath, Song, "Using Self-Supervised Learning Can Improve Model Robustness and
  Uncertainty", NeurIPS 2019 (github.com/hendrycks/ss-ood).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxad import losses, scores
from jaxad.data import pretext
from jaxad.methods.base import Method, Scorer, TrainPhase, apply_train, default_init
from jaxad.methods.ssl_multitask import flip_augment, translation_set, wide_resnet

HEADS = {"rotate": 4, "translate_x": 3, "translate_y": 3}
# The 36 joint transforms (x-shift label, y-shift label, rotation), ss-ood's loop order.
COMBINATIONS = np.array(list(itertools.product(range(3), range(3), range(4))), np.int32)


def combination_score(probs: dict[str, jax.Array]) -> jax.Array:
  """ss-ood's score from each head's softmax on the 36 copies ({head: [B, 36, K]}, copy order `COMBINATIONS`): [B].

  -sum_c sum_h p_h(true_h(c) | T_c(x)) = 3 * `scores.transform_likelihood` (which averages over the heads).
  """
  true = {"translate_x": COMBINATIONS[:, 0], "translate_y": COMBINATIONS[:, 1], "rotate": COMBINATIONS[:, 2]}
  return len(probs) * scores.transform_likelihood(probs, {h: jnp.asarray(true[h]) for h in probs})


def method(config: ml_collections.ConfigDict, spec) -> Method:
  """[Train('train')] and the scorer 'mhrot' (plus 'rotate', 'translate_x', 'translate_y')."""
  t = config.objective.translation
  shifts = jnp.array(translation_set(t, tuple(spec.shape)), jnp.int32)
  model = wide_resnet(config, HEADS)

  def translated(images, tx, ty):  # tx, ty: int labels [B]
    return pretext.translate(images, shifts[tx], shifts[ty], border=t.border)

  def loss_fn(params, ctx, batch):
    images = batch["image"]
    b = images.shape[0]
    tx, ty = jnp.split(jax.random.randint(ctx.rng, (2, b), 0, 3), 2)
    copies = pretext.rotations_all(translated(images, tx[0], ty[0]))  # [4, B, H, W, C]
    x = copies.reshape(4 * b, *images.shape[1:])
    (logits, _), batch_stats = apply_train(model, params, ctx, x, rngs={"dropout": jax.random.fold_in(ctx.rng, 1)})
    labels = {"rotate": jnp.repeat(jnp.arange(4), b), "translate_x": jnp.tile(tx[0], 4),
              "translate_y": jnp.tile(ty[0], 4)}
    per_copy = losses.multi_task_cross_entropy(logits, labels) / len(HEADS)  # [4 * B]
    metrics = {f"acc/{h}": jnp.mean(jnp.argmax(logits[h], -1) == labels[h]) for h in HEADS}
    return per_copy.reshape(4, b).mean(0).mean(), (batch_stats, None, metrics)

  def score_fn(variables, extra, batch):
    del extra
    images = batch["image"]

    def probs_of(combo):
      per_example = lambda v: jnp.full(images.shape[:1], v)
      x = pretext.rotate90(translated(images, per_example(combo[0]), per_example(combo[1])), per_example(combo[2]))
      logits = model.apply(variables, x, train=False)[0]
      return {h: jax.nn.softmax(logits[h], axis=-1) for h in HEADS}

    probs = jax.tree.map(lambda p: jnp.swapaxes(p, 0, 1), jax.lax.map(probs_of, jnp.asarray(COMBINATIONS)))
    out = {"mhrot": combination_score(probs)}
    out.update({h: combination_score({h: probs[h]}) for h in HEADS})
    return out

  return Method(
      phases=[TrainPhase("train", model, config.train, loss_fn, mix={"normal": config.train.batch_size},
                         init=default_init(model), augment=flip_augment(config.augment.flip))],
      scorers={n: Scorer(score_fn, phase="train", key=n) for n in ("mhrot", *HEADS)})
