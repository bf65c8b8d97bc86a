r"""Fault injection against real training processes: kills, corrupt checkpoints and a full disk, then resume.

  python benchmarks/fault_injection.py --out=benchmarks/results/fault_injection.json [--kills=20]

The run under test is the quickstart (MOCCA on digits, class 0; no download) with a checkpoint every epoch and a
metrics record every step, trained once without interruption as the reference. Then, each in a fresh workdir and a
fresh `python -m jaxad.main` process:

* `sigkill` x N: killed with SIGKILL when its metrics.jsonl reaches a random step (uniform over the whole run, both
  phases), then the same command is run to the end;
* `sigterm` x N: the same with SIGTERM, which must exit 143 after one line naming the saved step;
* `corrupt_<way>` x 1 each, 5 ways: the newest checkpoint step of the last phase is damaged (a flipped byte, a file
  cut in half, a deleted file, a deleted array folder, a garbled manifest) and its output removed, so the resume has
  to notice, move the step aside and continue from the step before;
* `full_disk`: the workdir on a tmpfs (needs root) too small for the checkpoints; the run must stop with one line,
  then the same command, after the tmpfs is enlarged (`mount -o remount,size=`), resumes to the end.

Each trial records: a clear message (the expected exit code, one `jaxad: error:` or stop line, no traceback), the
resumed result bit-identical to the reference (`scores.npz` arrays with `np.array_equal` and `summary.json` equal),
and anything lost (a failed resume, a step recorded twice in metrics.jsonl, a corrupt step deleted rather than moved
aside). The table and the JSON give counts per kind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
from helpers import CORRUPTIONS  # pylint: disable=g-import-not-at-top,wrong-import-position  (the tests' damage kinds)

ARGS = ["--config=configs/quickstart.py:normal_class=0", "--config.pretrain.epochs=10", "--config.train.epochs=6",
        "--config.pretrain.schedule_kwargs.milestones=(8,)", "--config.train.schedule_kwargs.milestones=(4,)",
        "--config.checkpoint_every_epochs=1", "--config.log_every_steps=1"]


def run(workdir, **popen):
  return subprocess.Popen([sys.executable, "-m", "jaxad.main", *ARGS, f"--workdir={workdir}"], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


def finish(workdir) -> tuple[int, str]:
  proc = run(workdir)
  _, err = proc.communicate(timeout=900)
  return proc.returncode, err


def records(workdir) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:  # a line cut short by a kill
        pass
  return out


def result(workdir):
  with np.load(os.path.join(workdir, "scores.npz")) as f:
    arrays = {k: f[k] for k in f.files}
  with open(os.path.join(workdir, "summary.json")) as f:
    return arrays, json.load(f)


def identical(workdir, reference) -> bool:
  try:
    arrays, summary = result(workdir)
  except OSError:
    return False
  ref_arrays, ref_summary = reference
  return (summary == ref_summary and arrays.keys() == ref_arrays.keys()
          and all(np.array_equal(arrays[k], ref_arrays[k]) for k in arrays))


def steps_once(workdir) -> bool:
  keys = [(r["stage"], r["step"]) for r in records(workdir)]
  return len(keys) == len(set(keys))


def one_line(err: str, marker: str) -> bool:
  return "Traceback" not in err and sum(marker in line for line in err.splitlines()) == 1


def kill_trial(kind, sig, step, reference, tmp) -> dict:
  workdir = os.path.join(tmp, f"{kind}-{step}")
  proc = run(workdir)
  while proc.poll() is None and len(records(workdir)) < step:
    time.sleep(0.01)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=300)
  if sig == signal.SIGTERM:
    clear = proc.returncode == 143 and one_line(err, "stopped by SIGTERM") and "saved" in err
  else:
    clear = proc.returncode == -signal.SIGKILL
  code, err2 = finish(workdir)
  same = code == 0 and identical(workdir, reference)
  lost = code != 0 or not steps_once(workdir)
  shutil.rmtree(workdir, ignore_errors=True)
  return {"kind": kind, "at_step": step, "clear": bool(clear), "identical": bool(same), "lost": bool(lost),
          "exit": proc.returncode, "resume_exit": code, "resume_tail": err2[-300:] if code else ""}


def corrupt_trial(way, ref_dir, reference, tmp) -> dict:
  workdir = os.path.join(tmp, f"corrupt-{way}")
  shutil.copytree(ref_dir, workdir)
  os.remove(os.path.join(workdir, "summary.json"))
  os.remove(os.path.join(workdir, "scores.npz"))
  shutil.rmtree(os.path.join(workdir, "checkpoints", "train", "output"))
  steps_dir = os.path.join(workdir, "checkpoints", "train", "steps")
  newest = max(int(n) for n in os.listdir(steps_dir) if n.isdigit())
  CORRUPTIONS[way](os.path.join(steps_dir, str(newest)))
  code, err = finish(workdir)
  clear = code == 0 and one_line(err, f"checkpoint step {newest}") and "moved it aside" in err
  kept = os.path.isdir(os.path.join(steps_dir, f"corrupt-{newest}"))
  same = code == 0 and identical(workdir, reference)
  shutil.rmtree(workdir, ignore_errors=True)
  return {"kind": f"corrupt_{way}", "clear": bool(clear), "identical": bool(same), "lost": bool(code != 0 or not kept),
          "resume_exit": code, "tail": err[-300:] if not clear else ""}


def full_disk_trial(reference, tmp) -> dict | None:
  mount = os.path.join(tmp, "small")
  os.makedirs(mount)
  if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", mount]).returncode:
    return None
  try:
    workdir = os.path.join(mount, "w")
    code, err = finish(workdir)
    clear = code == 2 and one_line(err, "jaxad: error:") and "No space left on device" in err
    partial = [d for _, ds, _ in os.walk(mount) for d in ds if "orbax-checkpoint-tmp" in d]
    subprocess.run(["mount", "-o", "remount,size=200m", mount], check=True)
    code2, err2 = finish(workdir)
    same = code2 == 0 and identical(workdir, reference)
    return {"kind": "full_disk", "clear": bool(clear), "identical": bool(same),
            "lost": bool(code2 != 0 or partial or not steps_once(workdir)), "exit": code,
            "error": next((l for l in err.splitlines() if l.startswith("jaxad: error:")), err[-300:]),
            "resume_exit": code2, "resume_tail": err2[-300:] if code2 else ""}
  finally:
    subprocess.run(["umount", mount])


def table(trials) -> str:
  kinds = list(dict.fromkeys(t["kind"] for t in trials))
  lines = ["| kind | trials | clear message | resumed bit-identical | anything lost |", "|---|---|---|---|---|"]
  for k in kinds:
    ts = [t for t in trials if t["kind"] == k]
    lines.append(f"| {k} | {len(ts)} | {sum(t['clear'] for t in ts)}/{len(ts)} | "
                 f"{sum(t['identical'] for t in ts)}/{len(ts)} | {sum(t['lost'] for t in ts)} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "fault_injection.json"))
  parser.add_argument("--kills", type=int, default=20, help="trials per signal")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix="jaxad_faults_")
  started = time.time()
  ref_dir = os.path.join(tmp, "reference")
  code, err = finish(ref_dir)
  if code != 0:
    sys.exit(f"the reference run failed:\n{err[-3000:]}")
  reference = result(ref_dir)
  total = len(records(ref_dir))
  rng = random.Random(args.seed)
  trials = []
  for sig, kind in ((signal.SIGKILL, "sigkill"), (signal.SIGTERM, "sigterm")):
    for step in sorted(rng.randint(1, total - 1) for _ in range(args.kills)):
      trials.append(kill_trial(kind, sig, step, reference, tmp))
      print(json.dumps(trials[-1]), flush=True)
  for way in CORRUPTIONS:
    trials.append(corrupt_trial(way, ref_dir, reference, tmp))
    print(json.dumps(trials[-1]), flush=True)
  disk = full_disk_trial(reference, tmp)
  if disk is not None:
    trials.append(disk)
    print(json.dumps(disk), flush=True)
  shutil.rmtree(tmp, ignore_errors=True)
  md = table(trials)
  print(md)
  out = {"command": " ".join(["python", "benchmarks/fault_injection.py"] + sys.argv[1:]), "run": ARGS,
         "steps_per_run": total, "wall_s": round(time.time() - started, 1), "full_disk_run": disk is not None,
         "table": md, "trials": trials}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
