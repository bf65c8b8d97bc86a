r"""Andrews et al. (2016) Table 3: MatConvNet VGG-M features (P5, FC6, FC7, FC8) + linear one-class SVMs on MNIST.

  python -m jaxad.main --config=configs/andrews_vggm_mnist.py:task=1,trial=0 --workdir=DIR

Arguments: task 1-4 (Table 1: 5 vs 2, 5 vs even, odd vs 2, odd vs even), layer ('all' or one of P5, FC6, FC7, FC8),
trial (0, 1, 2: the training sample; the test set is the same in all three), weights ('default' = weights/vgg_m, a
folder converted by third_party_weights/convert_matconvnet.py; 'random' = random init, the floor; or a path),
runlocal. Paper facts: 2,048 training images, 512 normal + 512 anomalous test images, features scaled to unit length,
grey digits replicated to RGB and resized to 224x224, the file's mean image subtracted (0-255 range), AUROC averaged
over 21 values of nu in [0.01, 0.99] (`<split>/<layer>/ocsvm_auroc`), 3 trials. Resizing is bilinear (the paper
does not say how it resized; MATLAB's imresize differs slightly).
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  return common.andrews_mnist(parse_arg(arg, **common.ANDREWS_ARGS), "vgg_m")
