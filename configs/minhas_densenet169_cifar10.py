r"""Minhas & Zelek (2019) Table I / II: an ImageNet DenseNet-169 fine-tuned as a 2-way normal / anomaly classifier.

  python -m jaxad.main --config=configs/minhas_densenet169_cifar10.py:anomaly_class=0 --workdir=DIR
  python -m jaxad.main --config=configs/minhas_densenet169_cifar10.py:dataset=mnist,anomaly_class=0 --workdir=DIR

Arguments: anomaly_class (the class that is the anomaly; `data.normal_class` holds it), dataset ('cifar10' = Table I
or 'mnist' = Table II), weights ('default' = weights/densenet169_<layout>, converted by the command
`model.weights_hint` prints when it is missing; 'random' = random init, the floor; or a path), layout ('keras' = the
keras.applications file the paper used, 'torchvision'), test ('sample' = the paper's balanced test set, 'all' = the
whole test split), seed (the protocol's samples; the run's seed is seed + 1), runlocal. `normal_classes` sweeps
classes: `--config.data.normal_classes='(0,1,2)'`.

Paper facts: keras.applications DenseNet-169 with ImageNet weights, its softmax layer replaced by a 2-neuron one;
images resized to 224x224 (grey MNIST replicated to RGB first); SGD lr 1e-3, decay 1e-6, momentum 0.9, Nesterov;
batch 16, shuffled; 50 epochs, "the best model is used"; the anomaly class's training images (CIFAR-10: 5,000) plus
an equal-size random sample of the other nine classes; 1,000 test images per class; AUROC. Paper AUROC (Table I,
CIFAR-10 in the paper's column order plane, car, bird, cat, deer, frog, horse, ship, truck, dog; jaxad's class
indices are plane 0, car 1, bird 2, cat 3, deer 4, dog 5, frog 6, horse 7, ship 8, truck 9): 0.998, 0.999, 0.995,
0.992, 0.998, 0.992, 0.999, 0.998, 0.999, 0.998; MNIST 0-9 (Table II): 0.998, 0.994, 0.984, 0.981, 0.984, 0.992,
0.984, 0.997, 0.992, 0.999.

jaxad's choices where the paper is silent or vague:
* Frozen layers: the paper keeps "the earlier layers" frozen and unfreezes "few layers" without naming them; jaxad
  trains the last dense block (denseblock4: 32 layers), the final BatchNorm and the new head ('^(denseblock4|
  final_bn|head)/'), everything before it is frozen (`train.trainable`). Frozen BatchNorm layers still use batch
  statistics and update their running averages in training, as Keras 2's trainable=False did in 2019.
* Input scaling 'torch' ([0, 1] then ImageNet mean/std: keras.applications' DenseNet `preprocess_input`); resizing
  is bilinear on the device (the paper does not say how it resized).
* "The best model": the epoch with the best validation AUROC on 10% of the labelled training images
  (`data.val_fraction`, both classes), which the 90% left train on.
* The anomaly score is the softmax probability of the anomaly neuron (the paper writes "the normal class neuron",
  which would rank anomalies last); `test/p_anomaly/{tp,fn,fp,tn,precision,recall,f1}` are the argmax decision's.
* Keras' decay is per optimizer step (lr / (1 + 1e-6 t)); optax's Nesterov applies the current lr to its whole
  momentum trace where Keras folds each step's lr into its velocity: the two differ by O(decay) relative, < 1e-5.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  return common.minhas(parse_arg(arg, **common.MINHAS_ARGS), "densenet169")
