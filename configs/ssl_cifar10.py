r"""Jezequel et al.: multi-task self-supervision (geometric + jigsaw heads on a WRN-16-4), CIFAR-10 one-vs-all.

  python -m jaxad.main --config=configs/ssl_cifar10.py:normal_class=1,seed=1 --workdir=/tmp/ssl_c1

Arguments: normal_class (0-9), seed, tasks ('geometric+jigsaw' = the paper's G+J, 'geometric' = G, 'jigsaw' = J:
the Table 4 ablation), runlocal.

From the paper (section 3): WRN-16-4 trunk; one dense head per task with dropout 0.3: x-translation (3), y-translation
(3), rotation (4) = the 10-way geometric layer, and jigsaw (3x3 grid, k = 3 permutations including the identity,
a margin between patches and a random offset); loss = sum over tasks and transforms of the cross-entropy (Eq. 7);
score = minus the mean over tasks of the summed true-transform softmax (Eqs. 5-6); SGD with Nesterov momentum,
batch 32.
Not in the paper, from ss-ood's MHRot (reference_implementations.md section 5.1): lr 0.1, momentum 0.9, weight decay
5e-4, per-step cosine decay; inputs scaled to [-1, 1]; shifts of 8 px with a reflect-101 border (cv2's); random
horizontal flips of the training images; BatchNorm momentum 0.9 (PyTorch's 0.1), He-normal (fan-out) convolutions.
jaxad's own choices: 15 epochs; jigsaw cells of 10 px at 32x32 (the central 30x30), patches of 8 px (margin 2,
offsets uniform in [0, 2] for training, centred for scoring; the gaps are 0, mid-grey in [-1, 1]); the two
non-identity permutations chosen greedily for maximal Hamming distance from a pool drawn with seed 0
(`jaxad.data.pretext.jigsaw_permutations`).
Paper (Table 3): mean AUROC 88.2 over the ten classes (airplane 75.1, automobile 96.3, bird 84.8, ...).
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, **common.SSL_ARGS)
  return common.ssl_one_vs_all(args, "cifar10")
