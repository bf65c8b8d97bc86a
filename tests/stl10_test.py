"""STL-10 configs (configs/{adib,adra}_stl10.py): fail at once without data or weights; run end to end at 96x96."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad import evaluate, optim, parallel, train
from jaxad.config import import_sibling, load_config
from jaxad.data import make_sources, make_task, pipeline, sources
from jaxad.errors import ConfigError
from jaxad.methods import get_method, transfer
from jaxad.methods.base import Context, DataSpec, FitContext, TrainPhase
from jaxad.models.resnet26 import ResNet26

from helpers import REPO, config_file, jaxad_main  # pylint: disable=g-bad-import-order

# torchvision's ImageNet constants, which STL-10 (drawn from ImageNet) is standardised with, written out here.
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def stl10_dir(tmp_path_factory):
  """A small stl10.npz with STL-10's layout (96x96 uint8; train, test and the unlabelled OE split)."""
  rng = np.random.default_rng(0)
  img = lambda n: rng.integers(0, 256, size=(n, 96, 96, 3), dtype=np.uint8)
  d = tmp_path_factory.mktemp("stl10")
  np.savez(d / "stl10.npz", x_train=img(60), y_train=np.arange(60) % 10, x_test=img(40), y_test=np.arange(40) % 10,
           x_unlabelled=img(50))
  return str(d)


@pytest.fixture(scope="module")
def source_96(tmp_path_factory):
  variables = ResNet26(num_classes=1).init(jax.random.key(3), jnp.zeros((1, 96, 96, 3)), train=False)
  return transfer.save_source(str(tmp_path_factory.mktemp("src96") / "source"), variables)


def test_missing_names_the_npz_or_says_how_to_get_tfds(stl10_dir, tmp_path):
  assert sources.missing("stl10", data_dir=stl10_dir) is None
  assert sources.missing("digits") is None
  msg = sources.missing("stl10", data_dir=str(tmp_path))
  assert f"{tmp_path / 'stl10.npz'} does not exist" in msg and "x_unlabelled" in msg


@pytest.mark.parametrize("name", ["adib", "adra"])
def test_config_without_data_or_weights_stops_at_once_naming_both(name, tmp_path):
  empty = tmp_path / "data"
  empty.mkdir()
  out = jaxad_main(f"--config=configs/{name}_stl10.py", f"--workdir={tmp_path / 'w'}", data_dir=str(empty),
                   timeout=120)
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
  line = next(l for l in out.stderr.splitlines() if l.startswith("jaxad: error: "))
  common = import_sibling(config_file("common.py"), "common")
  assert os.path.join(REPO, common.STL10_SOURCE) in line
  assert "--config=configs/pretrain_resnet26_imagenet96.py" in line
  assert f"{empty / 'stl10.npz'} does not exist" in line
  assert not (tmp_path / "w").exists()


def test_config_reads_stl10_with_its_unlabelled_split_as_oe(stl10_dir, source_96):
  c = load_config(config_file(f"adra_stl10.py:normal_class=4,data_dir={stl10_dir},source={source_96}"))
  assert (c.data.name, c.data.protocol, c.data.normal_class) == ("stl10", "leave_one_out", 4)
  assert (c.oe.name, c.oe.split, c.oe.per_batch) == ("stl10", "unlabelled", 64)
  assert c.model.adapters and c.train.trainable == transfer.ADRA_TRAINABLE
  with pytest.raises(ConfigError, match="STL-10 cannot start: source weights .*_nope do not exist"):
    load_config(config_file(f"adib_stl10.py:data_dir={stl10_dir},source={source_96}_nope"))
  # data_source=tfds lets tfds download STL-10 on first use: no data check at config time.
  c = load_config(config_file(f"adib_stl10.py:data_source=tfds,source={source_96}"))
  assert c.data.source == c.oe.source == "tfds" and c.objective.regularizer == "l2_sp"


def test_adra_stl10_runlocal_end_to_end_at_96x96(stl10_dir, source_96, tmp_path):
  out = jaxad_main(f"--config=configs/adra_stl10.py:normal_class=2,runlocal,source={source_96}",
                   f"--workdir={tmp_path}", data_dir=stl10_dir)
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert 0.0 <= summary["test/oe_sigmoid/auroc"] <= 1.0 and "test/oe_sigmoid/ap" in summary
  assert set(summary) == {f"test/oe_sigmoid/{m}" for m in ("auroc", "ap", "max_ba", "eer", "apcer_at_bpcer",
                                                           "f1_max")}
  assert all(np.isfinite(v) for v in summary.values())
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in records)
  assert {r["stage"] for r in records} == {"train"} and "l2_sp" not in records[-1]  # ADRA: no L2-SP
  scores = np.load(tmp_path / "scores.npz")
  assert scores["score/oe_sigmoid"].shape == (32,)
  assert scores["labels"].shape == scores["classes"].shape == (32,)
  assert np.all((scores["score/oe_sigmoid"] >= 0) & (scores["score/oe_sigmoid"] <= 1))
  assert int(scores["labels"].sum()) == int(np.sum(scores["classes"] == 2))  # the held-out class is the anomaly
  np.testing.assert_array_equal(scores["labels"], scores["classes"] == 2)
  assert json.loads((tmp_path / "data.json").read_text())["shape"] == [96, 96, 3]
  for name in ("threshold.json", "roc.png", "scores.png", "config.json"):
    assert (tmp_path / name).is_file(), name
  assert all((tmp_path / "checkpoints" / p / "output").is_dir() for p in ("source", "train"))


def test_adib_stl10_runlocal_trains_a_step_with_l2_sp_at_96x96(stl10_dir, source_96):
  c = load_config(config_file(f"adib_stl10.py:runlocal,data_dir={stl10_dir},source={source_96}"))
  task = make_task(c.data)
  assert task.x_train.shape == (16, 96, 96, 3) and task.x_test.shape == (32, 96, 96, 3)
  assert task.x_train.dtype == np.uint8  # images stay uint8 until batching
  spec = get_method(c.method)
  srcs = make_sources(c, spec.source_names(c))
  assert set(srcs) == {"normal", "test", "oe"} and srcs["normal"].shape == (96, 96, 3)
  method = spec(c, DataSpec.of(srcs))
  assert [p.name for p in method.phases] == ["source", "train"]
  phase = method.phases[1]
  assert isinstance(phase, TrainPhase)
  data = pipeline.TrainBatches(srcs, phase.mix, seed=0, num_epochs=1, drop_remainder=phase.drop_remainder)
  spe = data.steps_per_epoch
  batch = data[0]
  np.testing.assert_array_equal(batch["label"], [0] * 4 + [1] * 4)  # 4 normal + 4 unlabelled-split OE images
  assert batch["image"].shape == (8, 96, 96, 3) and batch["image"].dtype == np.float32
  # The OE rows are images of the unlabelled split (class -1), standardised with ImageNet's constants.
  unlabelled = np.load(os.path.join(stl10_dir, "stl10.npz"))["x_unlabelled"]
  for row in batch["image"][4:]:
    err = np.abs((unlabelled / 255.0 - IMAGENET_MEAN) / IMAGENET_STD - row).reshape(len(unlabelled), -1).max(1)
    assert err.min() < 1e-5
  np.testing.assert_array_equal(batch["class"][4:], -1)
  predict = evaluate.make_predict(parallel.make_mesh(), c.eval.batch_size)
  ctx = FitContext(previous={}, sources=srcs, predict=lambda fn, v, s: predict(fn, v, srcs[s]),
                   rng=jax.random.key(0), workdir="")
  previous = {"source": method.phases[0].fit(ctx)}
  tx = optim.make_optimizer(phase.optim, steps_per_epoch=spe)
  device_batch = {k: jnp.asarray(v) for k, v in batch.items()}
  state = train.init_state(phase, jax.random.key(0), device_batch, previous, tx)
  new, metrics = jax.jit(train.make_train_step(phase, spe, jax.random.key(1)))(state, device_batch)
  assert np.isfinite(float(metrics["loss"])) and float(metrics["l2_sp"]) == 0.0  # starts at theta_0
  ctx = Context(batch_stats=new.batch_stats, extra=new.extra, step=new.step, epoch=new.step // spe,
                rng=jax.random.key(2))
  assert float(jax.jit(phase.loss)(new.params, ctx, device_batch)[1][2]["l2_sp"]) > 0
