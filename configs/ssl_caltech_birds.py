r"""Jezequel et al. on Caltech-UCSD Birds 200 one-vs-all: the paper's fine-grained protocol (tfds only).

  python -m jaxad.main --config=configs/ssl_caltech_birds.py:normal_class=0 --workdir=/tmp/ssl_birds0

Arguments: normal_class (0-199), seed, tasks ('geometric+jigsaw', 'geometric', 'jigsaw'), runlocal.
Data: tfds 'caltech_birds2011' (needs internet on first use and the `jaxad[tfds]` extra), every image resized to
64x64 when loaded (the paper does not give its input size; jaxad's choice); about 30 training images per species,
the test set is every species' test images. Recipe: configs/ssl_cifar10.py, with shifts of 16 px (a quarter of 64)
and jigsaw cells of 21 px (patches of 19), and batches of 16: a species has 29-30 training images, fewer than the
paper's batch of 32 (which the paper does not change for this dataset).
Paper (Tables 2, 4): mean AUROC 83.2 (G+J), 77.6 (G), 78.5 (J); GeoTrans 66.6, MHRot 77.6.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, **common.SSL_ARGS)
  c = common.ssl_one_vs_all(args, "caltech_birds2011", source="tfds")
  c.train.batch_size = 16
  return c
