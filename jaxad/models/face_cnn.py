"""Andrews et al.'s Male-5045 face CNN (Table 2): the auxiliary-task network whose P8 and FC9 are anomaly features.

Andrews et al. (2016) learn a representation of male faces by classifying 5,045 male identities of CASIA-WebFace,
then score female faces as anomalies with a one-class SVM on the P8 or FC9 representation. Table 2 gives the net,
on 100x100x1 grey images (I):

  C1(32, 3, 1, 1)-C2(64, 3, 1, 1)-P2(2, 2, 0)-C3(64, 3, 1, 1)-C4(128, 3, 1, 1)-P4(2, 2, 0)-C5(96, 3, 1, 1)
  -C6(256, 3, 1, 1)-P6(2, 2, 1)-C7(160, 3, 1, 1)-C8(320, 3, 1, 1)-P8(7, 1, 0)-FC9(5045)

C(d, f, s, p) is a conv with d f x f filters, stride s and zero padding p; P(f, s, p) a max pool of f x f with stride
s and padding p; FC(n) a fully-connected layer of n units. Section 4.2: batch normalisation, and ReLU after every
weight layer except the fully-connected one (FC9 is the softmax classifier's input, so FC9 = the logits).

Choices the paper leaves open (there is no public code): each conv is bias-free and followed by BN then ReLU (the
usual place for BN, and a conv bias before BN is redundant); FC9 has a bias and no BN; P6's pad 1 is on every side
and, like all pools here, ignores padded cells (-inf padding). Spatial sizes for a 100x100 input, read off the table:
100 -> P2 50 -> P4 25 -> P6 13 -> P8 7, so P8 is [7, 7, 320] (15,680 values) and FC9 is a Dense over its
flattening (H, W, C order). With 5,045 classes the net has 80,403,413 parameters (1,290,528 conv weights, 2,240 BN
scales and biases, 79,110,645 in FC9), plus 2,240 BN running statistics in `batch_stats`.

Parameter names: `conv1`..`conv8` (kernel), `bn1`..`bn8` (scale, bias; mean, var in batch_stats), `fc9` (kernel,
bias). Features: 'C1'..'C8' (each block's output after BN and ReLU), 'P2', 'P4', 'P6', 'P8' [B, 7, 7, 320] (not
flattened) and 'FC9' (= the logits [B, num_classes]). Inputs: [B, 100, 100, 1]; the paper does not state their
scaling, so normalise as for training.

References:
  Andrews, Tanay, Morton, Griffin. Transfer Representation-Learning for Anomaly Detection. ICML 2016 workshop
    (Table 2 and Section 4.2).
  Yi, Lei, Liao, Li. Learning Face Representation from Scratch. arXiv:1411.7923, 2014 (CASIA-WebFace).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxad.models.layers import BatchNorm

# Table 2, in order: ('C', filters) for a 3x3 stride-1 pad-1 conv block, ('P', size, stride, pad) for a max pool.
TABLE2 = (("C", 32), ("C", 64), ("P", 2, 2, 0), ("C", 64), ("C", 128), ("P", 2, 2, 0), ("C", 96), ("C", 256),
          ("P", 2, 2, 1), ("C", 160), ("C", 320), ("P", 7, 1, 0))
NUM_IDENTITIES = 5045

conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")  # He normal (the paper: standard normal)


class Male5045(nn.Module):
  """Andrews et al.'s Male-5045 CNN (Table 2), returning `(logits, features)`; see the module docstring.

  Attributes:
    num_classes: outputs of FC9 (5,045 identities in the paper).
    bn_momentum: flax-convention running-average momentum of the BNs (PyTorch's 0.1 is 0.9).
    dtype: computation dtype (None: from inputs and parameters).

  `__call__(x, *, train)`: x [B, 100, 100, 1]. Returns logits [B, num_classes] and features 'C1'..'C8', 'P2', 'P4',
  'P6', 'P8' [B, 7, 7, 320] and 'FC9' (= logits). With `train=True` call `apply(..., mutable=['batch_stats'])`.

  Example:
    >>> model = Male5045(num_classes=10)
    >>> x = jnp.zeros((2, 100, 100, 1))
    >>> variables = model.init(jax.random.key(0), x, train=False)
    >>> logits, feats = model.apply(variables, x, train=False)
    >>> logits.shape, feats['P8'].shape
    ((2, 10), (2, 7, 7, 320))
  """
  num_classes: int = NUM_IDENTITIES
  bn_momentum: float = 0.9
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if x.ndim != 4 or x.shape[-1] != 1:
      raise ValueError(f"Male5045 expects grey images [B, 100, 100, 1], got shape {x.shape}.")
    features = {}
    y = x
    conv = 0
    for layer in TABLE2:
      if layer[0] == "C":
        conv += 1
        y = nn.Conv(layer[1], (3, 3), padding=((1, 1), (1, 1)), use_bias=False, kernel_init=conv_init,
                    dtype=self.dtype, name=f"conv{conv}")(y)
        y = BatchNorm(momentum=self.bn_momentum, dtype=self.dtype, name=f"bn{conv}")(y, use_running_average=not train)
        y = nn.relu(y)
        features[f"C{conv}"] = y
      else:
        _, size, stride, pad = layer
        y = nn.max_pool(y, (size, size), (stride, stride), padding=((pad, pad), (pad, pad)))
        features[f"P{conv}"] = y
    flat = jnp.reshape(y, (y.shape[0], -1))  # H, W, C order
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc9")(flat)
    features["FC9"] = logits
    return logits, features


def male5045(num_classes: int = NUM_IDENTITIES, **kwargs) -> Male5045:
  """The Male-5045 CNN (`Male5045(num_classes=...)`)."""
  return Male5045(num_classes=num_classes, **kwargs)

