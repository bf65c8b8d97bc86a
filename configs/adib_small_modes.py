r"""Robustness to small modes (Deecke et al. 2021 section 5.4): CIFAR-10 ships + a minor mode of trucks, ADIB/ADRA/SAD.

  python -m jaxad.main --config=configs/adib_small_modes.py:r=0.1,seed=1,source=/abs/weights/resnet26_transferad \
      --workdir=/tmp/adib_small_modes_r0.1_s1

Arguments: r (minor-mode amplitude in [0, 1], default 0.1: the normal training set is all 5,000 train images of
the primary class plus a seeded random round(r * 5,000) of the secondary class, S_n ~ 1/(r+1) P_a + r/(r+1) P_b;
the paper sweeps r over [0, 1]), primary (default 8 = ship), secondary (default 9 = truck), method (Fig. 5's
three curves: 'adib', 'adra', 'sad'; the paper calls its SAD baseline "ADIB with alpha = 0": 'sad' is jaxad's
Deep SAD baseline as in configs/sad_cifar10.py, 'adib_alpha0' that literal reading, ADIB's BCE without L2-SP),
seed (the run's seed; it also picks the secondary subset, data.protocol_seed), source ('random' or a
source-weights directory, as in configs/adib_cifar10.py), runlocal.
Test: the whole CIFAR-10 test set; primary and secondary images are normal (label 0), the other 8,000 anomalous.
summary.json: `test/<scorer>/auroc` etc. over all of it, `test/<scorer>/auroc_primary` (ships vs. anomalies) and
`.../auroc_secondary` (trucks vs. anomalies); scores.npz also holds the `secondary` mask.
Recipe: ADIB's CIFAR-10 one (configs/adib_cifar10.py): CIFAR mean/std, crop + flip, 64 normal + 64 CIFAR-100 OE
per batch, SGD 0.1, momentum 0.9, wd 1e-4, 100 epochs, lr x0.1 at 60 and 80; L2-SP alpha 1e-2 (ADIB); ADRA trains
only adapters, BN and head.
Paper: curves only (Fig. 5, relative secondary AUC vs. r, primary dashed): SAD's secondary AUC falls much faster
as r shrinks than ADIB's and ADRA's. jaxad: not yet measured (needs the ImageNet-32 source weights).
"""

from jaxad.config import import_sibling, parse_arg
from jaxad.errors import ConfigError
from jaxad.methods import transfer

common = import_sibling(__file__, "common")

# Fig. 5's three curves plus the literal reading of section 5.4's "ADIB with alpha = 0" (BCE without L2-SP).
METHODS = {**{k: common.RECIPES[k] for k in ("adib", "adra", "sad")},
           "adib_alpha0": ("adib", dict(loss="bce", regularizer="none"), False, ())}


def get_config(arg=None):
  args = parse_arg(arg, r=0.1, primary=8, secondary=9, method="adib", seed=1, source="random", runlocal=False)
  c = common.transfer_base()
  common.set_method(c, args.method, METHODS, where="small modes")
  c.seed = args.seed
  c.data.update(name="cifar10", protocol="small_modes", normal_class=args.primary, secondary_class=args.secondary,
                minor_mode_r=args.r, protocol_seed=args.seed)
  c.transfer.source = args.source
  if args.source != "random":  # fail at flag parsing, before a workdir is made
    transfer.check_source(args.source, ConfigError)
  return common.transfer_runlocal(c) if args.runlocal else c
