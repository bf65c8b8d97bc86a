"""Model registry: name -> builder of the Linen module(s) a method needs; every module returns (output, features).

LeNet and MOCCA-MVTec builders return an (autoencoder, encoder) pair for the pretrain-then-train methods; ResNet26
builders return one classifier network; `wide_resnet` (any depth and width) returns one trunk with a dense head per
named task; the ImageNet backbones (VGG-F/M, DenseNet-169, ResNet-152, Inception-V3/V4) and Andrews' Male-5045 face
CNN return (logits, features of their named layers) and load third-party weights (third_party_weights/, `backbones`).
"""

import functools

from jaxad.errors import ConfigError
from jaxad.models import (densenet, face_cnn, inception, lenet, mocca_resnet, resnet26, resnet_imagenet, vgg,
                          video_ae, wide_resnet)

MODELS = {
    "lenet_cifar10": lenet.lenet_cifar10,
    "lenet_mnist": lenet.lenet_mnist,
    "mocca_mvtec": mocca_resnet.mocca_mvtec,
    "mocca_video": video_ae.mocca_video,
    "resnet26_transferad": functools.partial(resnet26.ResNet26, variant="transferad"),
    "resnet26_rebuffi": functools.partial(resnet26.ResNet26, variant="rebuffi"),
    "wide_resnet": wide_resnet.WideResNet,
    # ImageNet backbones of Andrews et al. (MatConvNet VGG-F/M), their auxiliary face classifier, and Minhas & Zelek's.
    "vgg_f": vgg.vgg_f,
    "vgg_m": vgg.vgg_m,
    "male5045": face_cnn.male5045,
    "densenet169": densenet.densenet169,  # weights='torchvision' (default) or 'keras': the layouts of the two files
    "resnet152": resnet_imagenet.resnet152,  # idem
    "inception_v3": inception.inception_v3,  # variant='torchvision' (default) or 'keras'
    "inception_v4": inception.inception_v4,
}


def get_model(name: str):
  if name not in MODELS:
    raise ConfigError(f"Unknown model {name!r}; valid names: {sorted(MODELS)}.")
  return MODELS[name]


def count_params(params) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return sum(int(x.size) for x in jax.tree.leaves(params))
