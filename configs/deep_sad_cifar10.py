r"""Deep SAD (Ruff et al. 2020) with labelled anomalies of a fraction of the anomaly classes: Jezequel et al.'s
semi-supervised reference, CIFAR-10 one-vs-all.

  python -m jaxad.main --config=configs/deep_sad_cifar10.py:normal_class=0,class_fraction=0.25 --workdir=/tmp/sad

Arguments: normal_class (0-9), seed, class_fraction (Jezequel et al. Table 2: 0.1, 0.25 or 0.75 of the anomaly
sub-classes are known; of CIFAR-10's 9 anomaly classes that is round(0.9) = 1, round(2.25) = 2 and round(6.75) = 7,
picked with `data.protocol_seed`), runlocal.
Network and stages as Deep SAD's code (reference_implementations.md section 3.2): the LeNet of Deep SVDD (rep_dim
128), autoencoder pretraining, center c = mean code of the normal images (eps 0.1 guard), inputs in [0, 1] (no GCN),
eta 1, Adam with coupled weight decay 0.5e-6, batch 128. Not in Jezequel et al.: how many labelled anomalies;
jaxad takes Deep SAD's ratio of known outliers, 5% of the training set (263 images beside the 5,000 normal ones, 6 of
every 128 rows), and Deep SVDD's epochs (AE 350 with x0.1 at 250, then 150 with x0.1 at 50, lr 1e-4).
Paper (Jezequel et al. Table 2): no CIFAR-10 value; CIFAR-100 88.7 / 87.9 / 89.1 (75% / 25% / 10%).
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")

KNOWN_OUTLIER_RATIO = 0.05  # Deep SAD's ratio_known_outlier: labelled anomalies / all training images


def get_config(arg=None):
  args = parse_arg(arg, normal_class=0, seed=1, class_fraction=0.25, runlocal=False)
  c = common.hypersphere()
  c.method = "deep_sad"
  c.seed = args.seed
  c.data.update(normal_class=args.normal_class, preprocess="unit")
  c.data.anomaly.update(class_fraction=args.class_fraction,
                        limit=round(KNOWN_OUTLIER_RATIO / (1 - KNOWN_OUTLIER_RATIO) * 5000))
  c.pretrain.batch_size = c.train.batch_size = 128
  c.objective.anomaly_per_batch = round(KNOWN_OUTLIER_RATIO * 128)
  if args.runlocal:
    common.hypersphere_runlocal(c, train_limit=512)
    c.data.anomaly.limit = 64
    c.pretrain.batch_size = c.train.batch_size = 64
    c.objective.anomaly_per_batch = 8
  return c
