r"""Andrews et al. (2016) Table 3, row GS: the greyscale intensity image itself + linear one-class SVMs on MNIST.

  python -m jaxad.main --config=configs/andrews_gs_mnist.py:task=1,trial=0 --workdir=DIR

The baseline their networks' features are measured against, and the one Table 3 row this machine can run as the
paper did: no weights to download. The 28x28 digit (`model.name='greyscale'`, feature 'GS', the pipeline's [0, 1]
pixels, no resize) is flattened, scaled to unit length and scored by linear one-class SVMs at 21 values of nu, AUROC
averaged over nu (`<split>/GS/ocsvm_auroc`). Arguments: task 1-4 (Table 1: 5 vs 2, 5 vs even, odd vs 2, odd vs
even), trial (0, 1, 2: the training sample; the test set is the same in all three), runlocal. Everything else is
configs/andrews_vggf_mnist.py's protocol.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  return common.andrews_mnist(parse_arg(arg, **common.ANDREWS_ARGS), "greyscale")
