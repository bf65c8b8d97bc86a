r"""Minhas & Zelek (2019) Table I / II: an ImageNet ResNet-152 fine-tuned as a 2-way normal / anomaly classifier.

  python -m jaxad.main --config=configs/minhas_resnet152_cifar10.py:anomaly_class=0 --workdir=DIR
  python -m jaxad.main --config=configs/minhas_resnet152_cifar10.py:dataset=mnist,anomaly_class=0 --workdir=DIR

Arguments as configs/minhas_densenet169_cifar10.py (anomaly_class, dataset 'cifar10' | 'mnist', weights 'default' =
weights/resnet152_<layout> | 'random' | a path, layout 'keras' | 'torchvision', test 'sample' | 'all', seed,
runlocal); that file also lists the paper's shared recipe and jaxad's shared choices.

Paper facts: keras.applications ResNet-152 (v1: stride on the first 1x1 conv, conv biases) with ImageNet weights and a
new 2-neuron softmax, 224x224 inputs, the shared recipe (SGD 1e-3, decay 1e-6, Nesterov 0.9, batch 16, 50 epochs,
best model). Paper AUROC (Table I, CIFAR-10 plane, car, bird, cat, deer, frog, horse, ship, truck, dog): 0.998, 0.998,
0.995, 0.992, 0.998, 0.991, 1.000, 0.999, 0.999, 0.998; MNIST 0-9 (Table II): 0.998, 0.994, 0.982, 0.981, 0.984,
0.990, 0.981, 0.999, 0.990, 0.999.

jaxad's choices: the last stage (stage4: 3 bottleneck blocks) and the new head train ('^(stage4|head)/'), everything
before is frozen (the paper: "the earlier layers are kept frozen", not which); input scaling 'caffe' (RGB -> BGR,
minus the ImageNet BGR means, no scaling: keras.applications' ResNet `preprocess_input`) for the keras layout,
'torch' for torchvision's weights (ResNet v1.5).
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  return common.minhas(parse_arg(arg, **common.MINHAS_ARGS), "resnet152")
