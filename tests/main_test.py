"""The command line end to end: runlocal configs on real CIFAR-10, kill + resume, and user errors."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from helpers import jaxad_main, jaxad_main_in_process  # pylint: disable=g-bad-import-order


@pytest.mark.parametrize("config", ["dsvdd_cifar10.py:normal_class=3,boundary=soft,runlocal",
                                    "mocca_cifar10.py:normal_class=3,runlocal"])
def test_runlocal_on_real_cifar10_writes_every_result(config, data_dir, tmp_path):
  out = jaxad_main(f"--config=configs/{config}", f"--workdir={tmp_path}", data_dir=data_dir)
  assert out.returncode == 0, out.stderr[-3000:]
  for name in ("config.json", "data.json", "metrics.jsonl", "summary.json", "scores.npz", "roc.png", "scores.png",
               "threshold.json", "extremes_hypersphere.png", "extremes_reconstruction.png"):
    assert (tmp_path / name).exists(), name
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert 0.0 < summary["test/hypersphere/auroc"] < 1.0
  assert 0.0 < summary["test/reconstruction/auroc"] < 1.0  # the pretrained autoencoder is scored too
  scores = np.load(tmp_path / "scores.npz")
  # The saved raw scores give the summary's AUROC (sklearn as the reference), and beat a random scorer's spread.
  assert summary["test/hypersphere/auroc"] == pytest.approx(roc_auc_score(scores["labels"],
                                                                          scores["score/hypersphere"]), abs=1e-12)
  assert summary["test/reconstruction/auroc"] > 0.53  # class 3 (cat) is hard; 1,000 test images: chance is 0.5 +- 0.03
  thresholds = json.loads((tmp_path / "threshold.json").read_text())
  assert set(thresholds) == {"hypersphere", "reconstruction"} and "normal" in thresholds["hypersphere"]["from"]
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert {r["stage"] for r in records} == {"pretrain", "train"}
  assert all(np.isfinite(r["loss"]) and r["img_per_s"] > 0 for r in records)
  assert "img_s=" in out.stderr  # the progress bar reports throughput
  assert scores["score/hypersphere"].shape == scores["labels"].shape == (1000,)
  # --mode=eval re-scores the saved checkpoints to the same numbers.
  again = jaxad_main(f"--config=configs/{config}", f"--workdir={tmp_path}", "--mode=eval", data_dir=data_dir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert json.loads((tmp_path / "summary.json").read_text()) == summary


def wait_for_checkpoint(proc, ckpts, at_least, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    done = [int(p.name) for p in ckpts.glob("*") if p.name.isdigit()] if ckpts.exists() else []
    if done and max(done) >= at_least:
      return
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be stopped; raise its epochs"


def test_killed_and_terminated_runs_resume_to_the_same_result(tmp_path):
  args = ["--config=configs/quickstart.py:normal_class=0", "--config.pretrain.epochs=60", "--config.train.epochs=20",
          "--config.checkpoint_every_epochs=5"]
  whole = jaxad_main(*args, f"--workdir={tmp_path / 'whole'}")
  assert whole.returncode == 0, whole.stderr[-3000:]

  workdir = tmp_path / "stopped"
  ckpts = workdir / "checkpoints" / "pretrain" / "steps"
  proc = jaxad_main(*args, f"--workdir={workdir}", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  wait_for_checkpoint(proc, ckpts, 30)  # 3 steps per epoch: around epoch 10 of 60
  proc.send_signal(signal.SIGKILL)  # no chance to save: resumes from the last epoch checkpoint
  proc.wait()
  assert not (workdir / "summary.json").exists()

  # The signal lands where the run happens to be: on an epoch checkpoint (every 15 steps) the save-on-signal path
  # would go untested, so then the run is resumed and stopped again further on (3 tries).
  target = 75
  for _ in range(3):
    proc = jaxad_main(*args, f"--workdir={workdir}", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(proc, ckpts, target)
    proc.send_signal(signal.SIGTERM)  # saves at the next step boundary, says where, exits 128 + 15
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    line = next(l for l in stderr.splitlines() if "stopped by SIGTERM" in l)
    stopped_at = int(line.split(" at step ")[1].split()[0])
    assert f"saved {ckpts}/{stopped_at}" in line and (ckpts / str(stopped_at)).is_dir()
    if stopped_at % 15:
      break
    target = stopped_at + 20
  assert stopped_at % 15, "stopped on an epoch checkpoint three times: the save-on-signal path went untested"

  resumed = jaxad_main(*args, f"--workdir={workdir}")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"pretrain: resumed from step {stopped_at}" in resumed.stderr
  a, b = np.load(tmp_path / "whole" / "scores.npz"), np.load(workdir / "scores.npz")
  np.testing.assert_array_equal(a["score/hypersphere"], b["score/hypersphere"])  # bit-identical
  assert (json.loads((workdir / "summary.json").read_text())
          == json.loads((tmp_path / "whole" / "summary.json").read_text()))
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  keys = [(r["stage"], r["step"]) for r in records]
  assert len(keys) == len(set(keys))  # each step once, after two interruptions
  whole_records = [json.loads(l) for l in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
  assert keys == [(r["stage"], r["step"]) for r in whole_records]


# Overrides of config keys are flags that config_flags defines on the first parse: only a fresh process sees them
# as a user does, so these cases run the real command line.
@pytest.mark.parametrize("args,message", [
    (["--config=configs/mocca_cifar10.py:normal_class=12"], "normal_class=12 is out of range"),
    (["--config=configs/mocca_cifar10.py", "--config.train.epoch=3"], "unknown config key 'epoch'"),
    (["--config=configs/mocca_cifar10.py", "--config.train.epochs=many"], "--config.train.epochs=many"),
    (["--config=configs/mocca_cifar10.py", "--config.data.data_dir=/no/such/dir"],
     "/no/such/dir/cifar10.npz does not exist. To make it: with internet, let tfds download it: pip install "
     "'jaxad[tfds]'"),
])
def test_user_errors_are_one_line_in_a_real_process_too(args, message, tmp_path, data_dir):
  out = jaxad_main(*args, f"--workdir={tmp_path / 'w'}", data_dir=data_dir, timeout=120)
  assert out.returncode == 2 and "Traceback" not in out.stderr
  assert "jaxad: error: " in out.stderr and message in out.stderr, out.stderr
  assert not (tmp_path / "w").exists()


def test_missing_data_dir_in_environment_says_how_to_get_the_data(tmp_path):
  out = jaxad_main("--config=configs/mocca_cifar10.py", f"--workdir={tmp_path}", "--config.data.source=npz",
                   data_dir="", timeout=120)
  assert out.returncode == 2 and "needs a folder with cifar10.npz" in out.stderr, out.stderr


@pytest.mark.parametrize("args,message", [
    (["--mode=eval", "--config=configs/quickstart.py:normal_class=0"], "does not exist; train into it first"),
    (["--mode=predict"], "--mode=predict needs --images=PATH"),
    (["--mode=train"], "--config is required"),
])
def test_modes_without_what_they_need_are_one_clear_line(args, message, tmp_path):
  code, stderr = jaxad_main_in_process(*args, f"--workdir={tmp_path / 'w'}")
  assert code == 2 and "Traceback" not in stderr and message in stderr, stderr
  assert not (tmp_path / "w").exists()  # --mode=eval / predict never create a workdir


def test_quickstart_runs_every_class_and_prints_the_table(tmp_path):
  out = jaxad_main("--config=configs/quickstart.py:runlocal", f"--workdir={tmp_path}")  # classes 0 and 1 of digits
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  per_class = [summary[f"class_{k}/test/hypersphere/auroc"] for k in (0, 1)]
  assert summary["mean/test/hypersphere/auroc"] == pytest.approx(np.mean(per_class))
  table = (tmp_path / "results.md").read_text()
  assert table.strip() in out.stdout and "| **mean** |" in table
  assert (tmp_path / "class_1" / "roc.png").exists()
