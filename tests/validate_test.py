"""Tests of `jaxad.validate`: every config value is checked before any data is loaded or any step runs.

In process and fast: no training and no data. Each bad value goes through `train.train_and_evaluate` with the data
pointed at an empty folder, so a check that came only after loading would fail with the missing-file `DataError`
instead of the expected `ConfigError`; the control case shows that a valid config does reach that loading.
"""

from __future__ import annotations

import glob
import math
import os
import time

import ml_collections
import pytest

from jaxad import train, validate
from jaxad.config import load_config
from jaxad.errors import ConfigError, DataError
from jaxad.methods import METHODS, get_method
from jaxad.methods.base import DataSpec, TrainPhase

from helpers import REPO, config_file, jaxad_main_in_process, set_dotted  # pylint: disable=g-bad-import-order

# Arguments some configs need to load at all (their data or source weights are checked by get_config itself).
_REQUIRED_ARGS = {"adib_stl10": "source=random,data_source=tfds", "adra_stl10": "source=random,data_source=tfds",
                  "mocca_folder": "normal_dir=/tmp/normal,test_dir=/tmp/test",
                  # Pretrained backbones: their weight folders are not on this machine (the validator checks them).
                  "andrews_vggf_mnist": "weights=random", "andrews_vggm_mnist": "weights=random",
                  "andrews_male5045_casia": "train_dir=/tmp/ids,test_dir=/tmp/test",
                  "minhas_densenet169_cifar10": "weights=random", "minhas_resnet152_cifar10": "weights=random",
                  "minhas_inception_v4_cifar10": "weights=random"}


def _load(name: str, *args: str) -> ml_collections.ConfigDict:
  arg = ",".join(a for a in (_REQUIRED_ARGS.get(name, ""), *args) if a)
  return load_config(config_file(f"{name}.py") + (f":{arg}" if arg else ""))


def _with(config: ml_collections.ConfigDict, **overrides) -> ml_collections.ConfigDict:
  """A copy with dotted keys ('train__epochs' for train.epochs) set to any value, whatever the field's type."""
  d = config.to_dict()
  for dotted, value in overrides.items():
    set_dotted(d, dotted, value, sep="__")
  return ml_collections.ConfigDict(d)


def _offline(config: ml_collections.ConfigDict, data_dir) -> ml_collections.ConfigDict:
  """Every dataset the run would read points at `data_dir` (an empty folder)."""
  config = _with(config, data__data_dir=str(data_dir), data__source="npz")
  for other in ("oe", "reference"):
    if other in config:
      config[other].update(data_dir=str(data_dir), source="npz")
  return config


# (config, overrides, fragment of the message). The base configs are the runlocal miniatures.
CASES = [
    # Training phases.
    ("dsvdd_cifar10", dict(train__epochs=0), "train.epochs=0 is out of range: an int >= 1"),
    ("dsvdd_cifar10", dict(train__epochs=-1), "train.epochs=-1 is out of range: an int >= 1"),
    ("dsvdd_cifar10", dict(pretrain__epochs=2.5), "pretrain.epochs=2.5 is not valid: an int >= 1"),
    ("dsvdd_cifar10", dict(train__batch_size=0), "train.batch_size=0 is out of range: an int >= 1"),
    ("dsvdd_cifar10", dict(pretrain__batch_size="64"), "pretrain.batch_size='64' is not valid: an int >= 1"),
    ("dsvdd_cifar10", dict(train__lr=math.nan), "train.lr=nan is not valid: a finite number > 0"),
    ("dsvdd_cifar10", dict(pretrain__lr=-1e-3), "pretrain.lr=-0.001 is out of range: a finite number > 0"),
    ("dsvdd_cifar10", dict(train__lr=0), "train.lr=0 is out of range: a finite number > 0"),
    ("dsvdd_cifar10", dict(train__weight_decay=-1.0), "train.weight_decay=-1.0 is out of range: a finite number >= 0"),
    ("dsvdd_cifar10", dict(train__weight_decay=math.inf), "train.weight_decay=inf is not valid"),
    # The optimizer's own checks (jaxad.optim), run early and named by phase.
    ("dsvdd_cifar10", dict(train__optimizer="adamm"), "train.optimizer='adamm' is not an optax optimizer"),
    ("dsvdd_cifar10", dict(train__schedule_kwargs__milestones=(5,)),
     "train.schedule_kwargs.milestones=(5,): milestone 5 is outside (0, epochs] = (0, 2]"),
    ("dsvdd_cifar10", dict(pretrain__schedule_kwargs__decay=math.inf), "pretrain.schedule_kwargs.decay must be"),
    ("ssl_cifar10", dict(train__optimizer_kwargs=dict(momentun=0.9)),
     "train.optimizer_kwargs.momentun=0.9 is not an argument of optax.sgd (did you mean 'momentum'?)"),
    # The run's own keys.
    ("dsvdd_cifar10", dict(eval__batch_size=0), "eval.batch_size=0 is out of range: an int >= 1"),
    ("dsvdd_cifar10", dict(log_every_steps=0), "log_every_steps=0 is out of range: an int >= 1"),
    ("dsvdd_cifar10", dict(checkpoint_every_epochs=0), "checkpoint_every_epochs=0 is out of range: an int >= 1"),
    ("dsvdd_cifar10", dict(seed=-1), f"seed=-1 is out of range: an int in [0, {validate.MAX_SEED}]"),
    ("dsvdd_cifar10", dict(seed=1.5), "seed=1.5 is not valid"),
    ("dsvdd_cifar10", dict(threshold__quantile=1.0), "threshold.quantile=1.0 is out of range: a number in (0, 1)"),
    ("dsvdd_cifar10", dict(threshold__quantile=0), "threshold.quantile=0 is out of range"),
    ("dsvdd_cifar10", dict(threshold__limit=-5), "threshold.limit=-5 is out of range: an int >= 0"),
    ("dsvdd_cifar10", dict(method="dsvd"), "method='dsvd' is not valid: one of the methods"),
    ("dsvdd_cifar10", dict(evals__test__kind="bogus"), "evals.test.kind must be one of"),
    # Data.
    ("dsvdd_cifar10", dict(data__name="cifar11"), "data.name='cifar11' is not valid: one of the datasets"),
    ("dsvdd_cifar10", dict(data__protocol="one_vs_all"), "(did you mean 'one_vs_rest'?)"),
    ("dsvdd_cifar10", dict(data__train_limit=-1), "data.train_limit=-1 is out of range: an int >= 0"),
    ("dsvdd_cifar10", dict(data__test_limit=1.5), "data.test_limit=1.5 is not valid: an int >= 0"),
    ("dsvdd_cifar10", dict(data__val_fraction=1.0), "data.val_fraction=1.0 is out of range: a number in [0, 1)"),
    ("dsvdd_cifar10", dict(data__val_fraction=-0.1), "data.val_fraction=-0.1 is out of range"),
    ("dsvdd_cifar10", dict(data__normal_class=10), "data.normal_class=10 is out of range: an int in [0, 9] (a class of "
     "cifar10)"),
    ("dsvdd_cifar10", dict(data__normal_class=-1), "data.normal_class=-1 is out of range"),
    ("dsvdd_cifar10", dict(data__normal_classes=(0, 12)),
     "data.normal_classes[1]=12 is out of range: an int in [0, 9]"),
    ("ssl_cifar100", dict(data__normal_class=20), "data.normal_class=20 is out of range: an int in [0, 19] (a class of "
     "cifar100)"),  # label_mode='coarse': the 20 super-classes
    ("ssl_cifar10", dict(data__label_mode="coarse"), "'coarse' exists only for cifar100"),
    ("ssl_caltech_birds", dict(data__normal_class=200), "an int in [0, 199]"),
    ("dsvdd_cifar10", dict(data__preprocess="zscore"), "data.preprocess='zscore' is not valid"),
    ("dsvdd_cifar10", dict(data__name="mnist"), "data.minmax='published' is not valid: a published min-max table "
     "exists only for ['cifar10']"),
    ("adib_cifar10", dict(data__standardize_stats="cifar11"), "Fix: set --config.data.standardize_stats"),
    ("adib_small_modes", dict(data__secondary_class=8), "a class other than data.normal_class=8"),
    ("adib_small_modes", dict(data__minor_mode_r=1.5), "data.minor_mode_r=1.5 is out of range: a number in [0, 1]"),
    ("dsvdd_cifar10", dict(data__protocol="classification"), "only a classifier trains on (method 'supervised')"),
    # Cross-field rules.
    ("dsvdd_cifar10", dict(objective__boundary="soft", objective__warmup_epochs=2),
     "objective.warmup_epochs=2 is out of range: < train.epochs=2 for the soft boundary"),
    ("dsvdd_cifar10", dict(objective__boundary="soft", objective__warmup_epochs=7),
     "silently trains the hard boundary"),
    ("dsvdd_cifar10", dict(objective__boundary="sfot"), "(did you mean 'soft'?)"),
    ("dsvdd_cifar10", dict(objective__nu=0.0), "objective.nu=0.0 is out of range: a number in (0, 1]"),
    ("dsvdd_cifar10", dict(objective__nu=1.5), "objective.nu=1.5 is out of range"),
    ("dsvdd_cifar10", dict(data__train_limit=100),
     "data.train_limit=100 is out of range: at least pretrain.batch_size=200 normal training images"),
    ("dsvdd_cifar10", dict(data__train_limit=250, data__val_fraction=0.5), "(125 after data.val_fraction=0.5)"),
    ("mhrot_cifar10", dict(data__train_limit=16), "at least train.batch_size=32"),
    ("adib_cifar10", dict(oe__per_batch=16), "oe.per_batch=16 is out of range: an int in [0, 15]"),
    ("deep_sad_cifar10", dict(objective__anomaly_per_batch=0), "objective.anomaly_per_batch=0 is out of range"),
    # NaN / inf in any float hyperparameter, also those no rule above names.
    ("dsvdd_cifar10", dict(objective__center_eps=math.nan), "objective.center_eps=nan is not valid: a finite number"),
    ("adib_cifar10", dict(objective__alpha=-math.inf), "objective.alpha=-inf is not valid"),
    ("dsvdd_cifar10", dict(threshold__quantile=math.nan), "threshold.quantile=nan is not valid"),
]


# Messages of jaxad.optim and jaxad.evaluate, whose checks validate runs early: phrased by those modules.
_MESSAGES_OF_OTHERS = ("train.optimizer", "train.schedule_kwargs", "pretrain.schedule_kwargs", "evals.")


@pytest.mark.parametrize("name,overrides,fragment", CASES, ids=[f"{c[0]}-{'-'.join(c[1])}" for c in CASES])
def test_bad_values_are_config_errors_before_any_data_is_loaded(name, overrides, fragment, tmp_path):
  config = _offline(_with(_load(name, "runlocal"), **overrides), tmp_path)
  with pytest.raises(ConfigError) as e:
    train.train_and_evaluate(config, str(tmp_path / "w"))
  assert fragment in str(e.value), str(e.value)
  if not fragment.startswith(_MESSAGES_OF_OTHERS):
    fix = str(e.value).partition(" Fix: ")[2]
    assert "--config." in fix, str(e.value)  # says what to set, not only what is wrong
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("overrides,fragment", [
    (dict(train__epochs=0), "train.epochs=0 is out of range"),
    (dict(objective__boundary="soft", objective__warmup_epochs=3), "objective.warmup_epochs=3"),
])
def test_eval_mode_is_validated_too(overrides, fragment, tmp_path):
  config = _offline(_with(_load("dsvdd_cifar10", "runlocal"), **overrides), tmp_path)
  with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):  # not "does not exist; train into it first"
    train.train_and_evaluate(config, str(tmp_path / "w"), mode="eval")
  assert not (tmp_path / "w").exists()


def test_a_valid_config_gets_as_far_as_loading_the_data(tmp_path):
  """The control: without a bad value the same set-up fails on the missing data, so the cases above would notice a
  check made only after loading."""
  config = _offline(_load("dsvdd_cifar10", "runlocal"), tmp_path)
  with pytest.raises(DataError, match="cifar10.npz"):
    train.train_and_evaluate(config, str(tmp_path / "w"))


def test_validate_alone_and_its_message_format():
  config = _load("mocca_cifar10", "runlocal")
  validate.validate(config)  # the recipe itself is fine
  with pytest.raises(ConfigError) as e:
    validate.validate(_with(config, train__epochs=0))
  assert str(e.value) == ("train.epochs=0 is out of range: an int >= 1 (whole epochs of training). Fix: set "
                          "--config.train.epochs to an int >= 1.")
  with pytest.raises(ConfigError, match="must be an ml_collections.ConfigDict"):
    validate.validate({"train": {"epochs": 1}})
  assert validate.training_phases(config) == ["pretrain", "train"]


def _every_config() -> list[tuple[str, str]]:
  names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py")))
  out = []
  for name in names:
    if name == "common":
      continue
    out += [(name, ""), (name, "runlocal")]
    with open(config_file(f"{name}.py")) as f:
      if "boundary=" in f.read():  # the hypersphere configs: the soft boundary too
        out += [(name, "boundary=soft"), (name, "boundary=soft,runlocal")]
  return out


def test_every_config_file_passes_validation_quickly():
  cases = _every_config()
  assert len(cases) >= 50
  slowest = 0.0
  for name, arg in cases:
    config = _load(name, arg)
    start = time.perf_counter()
    validate.validate(config)
    slowest = max(slowest, time.perf_counter() - start)
  assert slowest < 0.1, f"validate took {slowest:.3f} s"  # measured: about 1 ms; a run's start must not notice it


# One config per method (transfer methods share their phases; ewc and doc need source weights to build).
_METHOD_CONFIGS = {"dsvdd": "dsvdd_cifar10", "mocca": "mocca_cifar10", "deep_sad": "deep_sad_cifar10",
                   "ssl_multitask": "ssl_cifar10", "mhrot": "mhrot_cifar10", "geotrans": "geotrans_cifar10",
                   "adib": "adib_cifar10", "supervised": "pretrain_resnet26_cifar100"}


@pytest.mark.parametrize("method", sorted(_METHOD_CONFIGS))
def test_drops_remainder_table_matches_the_methods(method):
  config = _load(_METHOD_CONFIGS[method], "runlocal")
  assert config.method == method
  built = get_method(method)(config, DataSpec((32, 32, 3), 100 if method == "supervised" else 10))
  dropping = tuple(p.name for p in built.phases if isinstance(p, TrainPhase) and p.drop_remainder)
  assert dropping == validate.DROPS_REMAINDER.get(method, ())
  assert set(validate.DROPS_REMAINDER) <= set(METHODS)


# Config files that cannot be loaded: one line naming the file and the line.
_BAD_FILES = {
    "syntax": ("import ml_collections\n\n\ndef get_config(arg=None):\n  c = ml_collections.ConfigDict(\n  return c\n",
               ":5: SyntaxError: '(' was never closed"),
    "raises": ("def get_config(arg=None):\n  table = {'a': 1}\n  return table['b']\n", ":3: KeyError: 'b'"),
    "raises_value": ("import math\n\n\ndef get_config(arg=None):\n  return math.sqrt(-1)\n",
                     ":5: ValueError: math domain error"),
    "bad_import": ("import no_such_module_for_jaxad\n", ":1: ModuleNotFoundError: No module named"),
    "no_get_config": ("import ml_collections\n\nCONFIG = ml_collections.ConfigDict()\n", " defines no get_config"),
    "returns_none": ("def get_config(arg=None):\n  pass\n", ": get_config returned NoneType"),
}


@pytest.mark.parametrize("kind", sorted(_BAD_FILES))
def test_config_files_that_fail_to_load_are_one_line_with_file_and_line(kind, tmp_path):
  text, fragment = _BAD_FILES[kind]
  path = tmp_path / f"{kind}.py"
  path.write_text(text)
  code, stderr = jaxad_main_in_process(f"--config={path}", f"--workdir={tmp_path / 'w'}")
  errors = [l for l in stderr.splitlines() if l.startswith("jaxad: error: ")]
  assert code == 2 and "Traceback" not in stderr and len(errors) == 1, stderr
  assert f"config file {path}{fragment}" in errors[0], errors[0]
  assert not (tmp_path / "w").exists()


def test_config_file_errors_of_a_sibling_and_of_arguments(tmp_path):
  (tmp_path / "shared.py").write_text("X = [\n")
  (tmp_path / "uses_sibling.py").write_text(
      "from jaxad.config import import_sibling\n\n\ndef get_config(arg=None):\n"
      "  return import_sibling(__file__, 'shared').X\n")
  code, stderr = jaxad_main_in_process(f"--config={tmp_path / 'uses_sibling.py'}", f"--workdir={tmp_path / 'w'}")
  assert code == 2 and "Traceback" not in stderr, stderr
  assert f"config file {tmp_path / 'shared.py'}:1: SyntaxError" in stderr and "imported by config file" in stderr
  # A ConfigError of the file's own (its arguments) keeps its message: it already says what to fix.
  code, stderr = jaxad_main_in_process("--config=configs/dsvdd_cifar10.py:normal_clas=3", f"--workdir={tmp_path}")
  assert code == 2 and "Unknown config argument 'normal_clas'" in stderr, stderr


def test_load_config_reports_file_and_line_too(tmp_path):
  path = tmp_path / "broken.py"
  path.write_text("def get_config(arg=None):\n  return 1 +\n")
  with pytest.raises(ConfigError, match=f"config file {path}:2: SyntaxError"):
    load_config(str(path))
  path.write_text("X = 1\n")
  with pytest.raises(ConfigError, match="defines no get_config"):
    load_config(str(path))


def test_bad_values_in_a_config_file_are_one_line_in_train_and_eval_modes(tmp_path):
  path = tmp_path / "short.py"
  path.write_text(f"from jaxad.config import load_config\n\n\ndef get_config(arg=None):\n"
                  f"  c = load_config({config_file('dsvdd_cifar10.py')!r})\n  c.log_every_steps = 0\n  return c\n")
  for mode in ("train", "eval"):
    code, stderr = jaxad_main_in_process(f"--config={path}", f"--workdir={tmp_path / 'w'}", f"--mode={mode}",
                                         data_dir=str(tmp_path))
    errors = [l for l in stderr.splitlines() if l.startswith("jaxad: error: ")]
    assert code == 2 and "Traceback" not in stderr and len(errors) == 1, stderr
    assert "log_every_steps=0 is out of range: an int >= 1" in errors[0]
    assert not (tmp_path / "w").exists()


def test_a_workdir_that_cannot_be_a_writable_folder_is_one_error_before_any_data(tmp_path, monkeypatch):
  c = _with(_load("dsvdd_cifar10"), data__data_dir=str(tmp_path / "empty"))
  (tmp_path / "afile").write_text("x")
  for workdir, fragment in ((tmp_path / "afile", "is a file, not a folder"),
                            (tmp_path / "afile" / "sub" / "w", f"is below the file {tmp_path / 'afile'}")):
    with pytest.raises(ConfigError, match=fragment):
      train.train_and_evaluate(c, str(workdir))
  # Root may write anywhere, so the unwritable case stands in a refusing os.access.
  monkeypatch.setattr(os, "access", lambda path, mode: False)
  with pytest.raises(ConfigError, match=r"is not writable by this user \(errno 13"):
    train.train_and_evaluate(c, str(tmp_path / "new" / "w"))
  assert not (tmp_path / "new").exists()
