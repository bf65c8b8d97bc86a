"""Named sources on the real CIFAR-10: the 'anomaly' source of labelled anomalies."""

import ml_collections
import numpy as np
import pytest

from jaxad.data import default_config, make_sources, sources
from jaxad.errors import ConfigError


def cfg(data_dir, **data):
  return ml_collections.ConfigDict({"data": default_config(data_dir=data_dir, source="npz", preprocess="unit",
                                                           **data)})


def test_anomaly_source_holds_labelled_training_anomalies_never_test_images(data_dir):
  raw = sources.load("cifar10", source="npz", data_dir=data_dir)
  c = cfg(data_dir, normal_class=3, test_limit=100)
  c.data.anomaly.update(classes=(5, 7), limit=50)
  out = make_sources(c, {"anomaly"})
  anomaly = out["anomaly"]
  assert len(anomaly) == 50
  assert np.all(anomaly.field("label") == 1) and set(anomaly.field("class")) <= {5, 7}
  idx = np.flatnonzero(np.isin(raw.y_train, (5, 7)))
  keep = np.sort(np.random.default_rng(0).permutation(len(idx))[:50])  # jaxad's fixed subsets: seed 0
  np.testing.assert_array_equal(anomaly.examples.arrays["image"], raw.x_train[idx[keep]])
  np.testing.assert_allclose(anomaly.batch(np.arange(3))["image"], raw.x_train[idx[keep[:3]]] / np.float32(255))
  # Default classes: every class the protocol labels anomalous (one-vs-rest: all but the normal one).
  everything = make_sources(cfg(data_dir, normal_class=3, test_limit=100), {"anomaly"})["anomaly"]
  assert len(everything) == 45000 and 3 not in set(everything.field("class"))
  held_out = make_sources(cfg(data_dir, protocol="leave_one_out", normal_class=2, test_limit=100),
                          {"anomaly"})["anomaly"]
  assert set(held_out.field("class")) == {2} and len(held_out) == 5000
  bad = cfg(data_dir, normal_class=3)
  bad.data.anomaly.classes = (3, 4)
  with pytest.raises(ConfigError, match=r"data.anomaly.classes \[3, 4\] overlap the normal classes \[3\]"):
    make_sources(bad, {"anomaly"})
