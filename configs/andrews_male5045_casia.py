r"""Andrews et al. (2016) section 4.2: the auxiliary task. A face CNN learns male identities; its P8 / FC9 features
then score female faces as anomalies with linear one-class SVMs. Two stages, run one after the other:

  # 1. the Male-5045 classifier on male identities (one sub-folder of face images per identity)
  python -m jaxad.main --config=configs/andrews_male5045_casia.py:stage=classifier,train_dir=/data/casia/male_ids,\
test_dir=/data/casia/test --workdir=/tmp/male5045
  # 2. its features + one-class SVMs: normal = held-out male faces (train_dir), test: test_dir/good vs test_dir/female
  python -m jaxad.main --config=configs/andrews_male5045_casia.py:stage=features,train_dir=/data/casia/male_normal,\
test_dir=/data/casia/test,source=/tmp/male5045/source --workdir=/tmp/male5045_ad

CASIA-WebFace is not distributed with jaxad (request it from its authors, CBSR); any labelled folder works the same
way: `train_dir` of stage 1 holds one sub-folder per sub-category of the normal class (`jaxad.data.folder`), and
`test_dir` has `good/` (normal) and one sub-folder per kind of anomaly. Images are read as grey and resized to
100x100 (Table 2's input), values in [0, 1] (the paper does not say how it scaled them).

Recipe of stage 1 (paper section 4.2): SGD, momentum 0.9, weight decay 5e-4, lr 1e-2 for 150 epochs, 1e-3 for 75 and
1e-4 for 75; batch 128 and the crop/flip-free training are jaxad's choices (not in the paper). `classes` is the
number of identities (5,045 in the paper). Stage 2: features 'P8' and 'FC9', unit length, 21 values of nu.
Arguments: stage ('classifier' | 'features'), train_dir, test_dir, source (stage 2: stage 1's `<workdir>/source`),
classes, seed, runlocal (tiny budget for tests).
"""

from jaxad.config import import_sibling, parse_arg
from jaxad.errors import ConfigError

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, stage="classifier", train_dir="", test_dir="", source="", classes=5045, seed=1,
                   runlocal=False)
  if args.stage not in ("classifier", "features"):
    raise ConfigError(f"stage must be 'classifier' or 'features', got {args.stage!r}.")
  if not args.train_dir or not args.test_dir:
    raise ConfigError("configs/andrews_male5045_casia.py needs train_dir=... and test_dir=... (see its docstring).")
  if args.stage == "classifier":
    c = common.supervised()
    c.model = dict(name="male5045", num_classes=args.classes, input_size=0)
    c.augment = False
    c.train = common.optim(epochs=300, batch_size=128, optimizer="sgd", lr=1e-2, weight_decay=5e-4,
                           optimizer_kwargs=dict(momentum=0.9), **common.step_decay(150, 225))
    c.evals = {}  # the test folder holds normal/anomalous faces, not identities: stage 2 evaluates
    if args.runlocal:
      c.train.update(epochs=2, batch_size=8)
      c.train.schedule, c.train.schedule_kwargs = "constant", {}
      c.log_every_steps = 1
  else:
    if not args.source:
      raise ConfigError("stage=features needs source=<stage 1 workdir>/source (the trained Male-5045 weights).")
    c = common.deep_features("male5045", weights=args.source, layers=("P8", "FC9"), input_scaling="data",
                             input_size=0, weights_hint="train it first with stage=classifier (see this config)")
    c.model.kwargs = dict(num_classes=args.classes)
    if args.runlocal:
      c.objective.nus = (0.1, 0.5, 0.9)
  c.seed = args.seed
  c.data.update(name="folder", preprocess="unit")
  c.data.folder.update(normal_dir=args.train_dir, test_dir=args.test_dir, size=(100, 100), channels=1)
  return c
