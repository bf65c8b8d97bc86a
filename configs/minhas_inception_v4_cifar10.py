r"""Minhas & Zelek (2019) Table I / II: an ImageNet Inception-V4 fine-tuned as a 2-way normal / anomaly classifier.

  python -m jaxad.main --config=configs/minhas_inception_v4_cifar10.py:anomaly_class=0 --workdir=DIR
  python -m jaxad.main --config=configs/minhas_inception_v4_cifar10.py:dataset=mnist,anomaly_class=0 --workdir=DIR

Arguments as configs/minhas_densenet169_cifar10.py (anomaly_class, dataset 'cifar10' | 'mnist', weights 'default' =
weights/inception_v4_cadene | 'random' | a path, test 'sample' | 'all', seed, runlocal; layout is always 'cadene');
that file also lists the paper's shared recipe and jaxad's shared choices.

Paper facts: Inception-V4 from a third-party Keras port (kentsommer/keras-inceptionV4, ImageNet weights) with a new
2-neuron softmax, 299x299 inputs, the shared recipe (SGD 1e-3, decay 1e-6, Nesterov 0.9, batch 16, 50 epochs, best
model). Paper AUROC (Table I, CIFAR-10 plane, car, bird, cat, deer, frog, horse, ship, truck, dog): 0.930, 0.971,
0.842, 0.854, 0.895, 0.894, 0.949, 0.922, 0.955, 0.932; MNIST 0-9 (Table II): 0.998, 0.995, 0.983, 0.981, 0.985,
0.993, 0.984, 0.997, 0.994, 0.999.

jaxad's choices: the weights are Cadene's PyTorch Inception-V4 (the TF-slim ImageNet weights, which the Keras port
also converted; not in keras.applications), input scaling 'tf' ([-1, 1]); the three Inception-C blocks and the new
head train ('^(inception_c\d+|head)/'), everything before (stem, Inception-A/B, reductions) is frozen (the paper:
"the earlier layers are kept frozen", not which). The dropout before the head (keep 0.8) is active in training.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  return common.minhas(parse_arg(arg, **common.MINHAS_ARGS), "inception_v4")
