"""STL-10 configs (configs/{adib,adra}_stl10.py): fail at once without data or weights; run end to end at 96x96."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad import train
from jaxad.config import load_config
from jaxad.data import make_task, sources
from jaxad.errors import ConfigError
from jaxad.methods import transfer
from jaxad.models.resnet26 import ResNet26

from conftest import REPO  # pylint: disable=g-bad-import-order
from main_test import jaxad_main  # pylint: disable=g-bad-import-order


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
  assert os.path.join(REPO, transfer.STL10_SOURCE) in line
  assert "--config=configs/pretrain_resnet26_imagenet96.py" in line
  assert f"{empty / 'stl10.npz'} does not exist" in line
  assert not (tmp_path / "w").exists()


def test_config_reads_stl10_with_its_unlabelled_split_as_oe(stl10_dir, source_96):
  c = load_config(os.path.join(REPO, "configs", f"adra_stl10.py:normal_class=4,data_dir={stl10_dir},"
                               f"source={source_96}"))
  assert (c.data.name, c.data.protocol, c.data.normal_class) == ("stl10", "leave_one_out", 4)
  assert (c.oe.name, c.oe.split, c.oe.per_batch) == ("stl10", "unlabelled", 64)
  assert c.model.adapters and c.train.trainable == transfer.ADRA_TRAINABLE
  with pytest.raises(ConfigError, match="STL-10 cannot start: source weights .*_nope do not exist"):
    load_config(os.path.join(REPO, "configs", f"adib_stl10.py:data_dir={stl10_dir},source={source_96}_nope"))
  # data_source=tfds lets tfds download STL-10 on first use: no data check at config time.
  c = load_config(os.path.join(REPO, "configs", f"adib_stl10.py:data_source=tfds,source={source_96}"))
  assert c.data.source == c.oe.source == "tfds" and c.objective.regularizer == "l2_sp"


def test_adra_stl10_runlocal_end_to_end_at_96x96(stl10_dir, source_96, tmp_path):
  out = jaxad_main(f"--config=configs/adra_stl10.py:normal_class=2,runlocal,source={source_96}",
                   f"--workdir={tmp_path}", data_dir=stl10_dir)
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert 0.0 <= summary["test/oe_sigmoid/auroc"] <= 1.0 and "test/oe_sigmoid/ap" in summary
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in records)
  scores = np.load(tmp_path / "scores.npz")
  assert scores["score/oe_sigmoid"].shape == (32,)
  assert int(scores["labels"].sum()) == int(np.sum(scores["classes"] == 2))  # the held-out class is the anomaly


def test_adib_stl10_runlocal_trains_a_step_with_l2_sp_at_96x96(stl10_dir, source_96):
  c = load_config(os.path.join(REPO, "configs", f"adib_stl10.py:runlocal,data_dir={stl10_dir},source={source_96}"))
  task = make_task(c.data)
  assert task.x_train.shape == (16, 96, 96, 3) and task.x_test.shape == (32, 96, 96, 3)
  (stage,) = transfer.stages(c, task.x_train.shape[1:])
  data, spe = stage.batches(task.x_train, global_batch_size=c.train.batch_size, seed=0, num_epochs=1)
  batch = data[0]
  np.testing.assert_array_equal(batch["label"], [0] * 4 + [1] * 4)  # 4 normal + 4 unlabelled-split OE images
  predict = lambda fn, v, x: jax.tree.map(np.asarray, jax.jit(fn)(v, {"image": jnp.asarray(x)}))
  tx = train.make_optimizer(stage.optim, steps_per_epoch=spe)
  state = train.init_state(stage, jax.random.key(0), task.x_train, None, tx, predict)
  new, metrics = jax.jit(train.make_train_step(stage, spe))(state, jax.tree.map(jnp.asarray, batch))
  assert np.isfinite(float(metrics["loss"])) and float(metrics["l2_sp"]) == 0.0  # starts at theta_0
  assert float(jax.jit(stage.loss)(new.params, new, jax.tree.map(jnp.asarray, batch), 0)[1][2]["l2_sp"]) > 0
