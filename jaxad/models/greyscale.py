"""Andrews et al.'s GS representation: the greyscale intensity image itself, as a parameter-free 'network'.

Their Table 3 scores it beside the networks' layers, the floor a learnt representation must beat; as a jaxad model
it runs through the same feature + one-class SVM pipeline (`jaxad.methods.deep_features`, feature 'GS') with
`model.input_scaling='data'` (the pipeline's images, no resize). Colour images are turned grey with the ITU-R
BT.601 luma weights, as MATLAB's rgb2gray (the paper's MatConvNet setting) does.

References:
  Andrews, Tanay, Morton, Griffin. Transfer Representation-Learning for Anomaly Detection. ICML 2016 workshop.
    (Table 2: GS, the greyscale intensity image.)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, MATLAB's rgb2gray


class Greyscale(nn.Module):
  """[B, H, W, 1|3] -> (the grey image flattened [B, H*W], {'GS': the grey image [B, H, W, 1]})."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    del train  # nothing to train
    grey = x if x.shape[-1] == 1 else jnp.tensordot(x, jnp.asarray(LUMA, x.dtype), axes=([-1], [0]))[..., None]
    return grey.reshape(grey.shape[0], -1), {"GS": grey}
