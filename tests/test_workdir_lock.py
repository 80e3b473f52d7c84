"""One run per workdir: a held lock is refused at once, a stale one is taken over, an owner
whose lease was taken over is told, and of runs racing for a free workdir exactly one wins."""

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import tensorstore as ts

from sam_jax.training import workdir_lock


def _write_holder(workdir, **fields):
  record = {"owner": "other", "host": "elsewhere", "pid": 1, "lease_s": 60.0,
            "renewed": time.time(), **fields}
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / workdir_lock.LOCK_KEY).write_text(json.dumps(record))


def test_a_held_lock_is_refused_naming_its_holder_and_free_after_release(tmp_path):
  first = workdir_lock.WorkdirLock(str(tmp_path)).acquire()
  with pytest.raises(workdir_lock.WorkdirLocked, match=r"in use by process \d+ on host"):
    workdir_lock.WorkdirLock(str(tmp_path)).acquire()
  first.release()
  assert not (tmp_path / workdir_lock.LOCK_KEY).exists()
  with workdir_lock.WorkdirLock(str(tmp_path)):
    assert json.loads((tmp_path / workdir_lock.LOCK_KEY).read_text())["host"] == \
        socket.gethostname()


def test_a_live_lease_on_another_host_is_refused(tmp_path):
  _write_holder(tmp_path, renewed=time.time() - 5)
  with pytest.raises(workdir_lock.WorkdirLocked, match="host 'elsewhere'"):
    workdir_lock.WorkdirLock(str(tmp_path)).acquire()


@pytest.mark.parametrize("stale", ["lease expired", "owner process gone"])
def test_a_stale_lock_is_taken_over(tmp_path, stale):
  if stale == "lease expired":  # A crashed owner on another host: not renewed for lease_s.
    _write_holder(tmp_path, renewed=time.time() - 61)
  else:  # A killed owner on this host: its pid no longer exists.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_holder(tmp_path, host=socket.gethostname(), pid=dead.pid)
  with workdir_lock.WorkdirLock(str(tmp_path)) as lock:
    assert json.loads((tmp_path / workdir_lock.LOCK_KEY).read_text())["owner"] == lock.owner


def test_an_owner_whose_lease_was_taken_over_is_told(tmp_path):
  lock = workdir_lock.WorkdirLock(str(tmp_path), lease_s=2.0).acquire()
  lock.check()  # Still ours.
  _write_holder(tmp_path)  # Another run's conditional takeover, as after an expired lease.
  deadline = time.time() + 30
  while True:
    try:
      lock.check()
    except workdir_lock.WorkdirLocked as e:
      assert "taken over by process 1 on host 'elsewhere'" in str(e)
      break
    assert time.time() < deadline, "the renewal never noticed the takeover"
    time.sleep(0.05)
  lock.release()  # Leaves the other run's lock alone.
  assert json.loads((tmp_path / workdir_lock.LOCK_KEY).read_text())["owner"] == "other"


def test_of_runs_racing_for_a_free_workdir_exactly_one_wins(tmp_path):
  locks = [workdir_lock.WorkdirLock(str(tmp_path)) for _ in range(8)]
  start, won, refused = threading.Barrier(len(locks)), [], []

  def take(lock):
    start.wait()
    try:
      won.append(lock.acquire())
    except workdir_lock.WorkdirLocked:
      refused.append(lock)

  threads = [threading.Thread(target=take, args=(lock,)) for lock in locks]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert len(won) == 1 and len(refused) == 7
  won[0].release()


def test_a_gs_workdir_is_locked_in_its_bucket_through_the_gcs_driver():
  """On gs:// the lease is a GCS object written with generation preconditions (TensorStore's
  ``gcs`` driver); opening the store needs no network."""
  assert workdir_lock.kvstore_url("gs://bucket/runs/vit/") == "gs://bucket/runs/vit/"
  spec = ts.KvStore.open(workdir_lock.kvstore_url("gs://bucket/runs/vit")).result().spec()
  assert spec.to_json() == {"driver": "gcs", "bucket": "bucket", "path": "runs/vit/"}
