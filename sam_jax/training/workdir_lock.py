"""One run per workdir: a lease in ``<workdir>/lock.json``, valid on local disks and on gs://.

The lock is a small JSON object ``{"owner", "host", "pid", "renewed", "lease_s"}``
written with conditional writes of a TensorStore key-value store (already a
dependency through Orbax; ``etils.epath`` has no exclusive create): it is created
only if absent, and renewed or deleted only if it is still the owner's own last
write (``if_equal`` on the storage generation: an ``ifGenerationMatch``
precondition on GCS, the ``file`` driver's lock files on local and network disks;
see https://google.github.io/tensorstore/kvstore/file/index.html).

The owner renews the lease every ``lease_s / 4`` seconds from a daemon thread. A
lock not renewed for ``lease_s`` seconds (its owner crashed or was killed), or
one whose owner is a process gone from this host, is stale and is taken over
(again by a conditional write, so of two runs racing for it one wins). ``check``,
which the training loop calls every step, raises once the lease was taken over or
could not be renewed for ``lease_s`` seconds (another run may own the workdir then).
"""

import json
import os
import socket
import threading
import time
import uuid

from absl import logging
from etils import epath
import tensorstore as ts

LOCK_KEY = "lock.json"
DEFAULT_LEASE_S = 60.0
_ABSENT = b"\x02"  # TensorStore's storage generation of a missing key.


class WorkdirLocked(RuntimeError):
  """Another run holds the workdir (or took it over from this one)."""


def kvstore_url(workdir: str) -> str:
  """The TensorStore KvStore URL of the directory ``workdir`` (a path or a URL: gs://...)."""
  path = str(workdir)
  if "://" not in path:
    path = "file://" + str(epath.Path(path).absolute())
  return path.rstrip("/") + "/"


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Alive, owned by another user.
    return True
  return True


class WorkdirLock:
  """The lease of one run on ``workdir``; ``acquire`` raises ``WorkdirLocked`` if it is held."""

  def __init__(self, workdir: str, *, lease_s: float = DEFAULT_LEASE_S):
    if lease_s <= 0:
      raise ValueError(f"lease_s={lease_s} must be > 0.")
    self.workdir = str(workdir)
    self.lease_s = lease_s
    self._store = ts.KvStore.open(kvstore_url(workdir)).result()
    self._record = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                    "lease_s": lease_s}
    self._generation: bytes | None = None
    self._renewed = 0.0  # time.monotonic() of the last write of the lease.
    self._lost: str | None = None
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  @property
  def owner(self) -> str:
    """This lock's unique owner id, as written in the lock file."""
    return self._record["owner"]

  @property
  def path(self) -> str:
    return kvstore_url(self.workdir) + LOCK_KEY

  def _write(self, if_equal: bytes) -> bytes:
    """Conditionally writes our record (renewed now); the new generation, b"" if refused."""
    value = json.dumps({**self._record, "renewed": time.time()}).encode()
    return self._store.write(LOCK_KEY, value, if_equal=if_equal).result().generation

  def _describe(self, holder: dict) -> str:
    age = time.time() - float(holder.get("renewed", 0))
    return (f"process {holder.get('pid')} on host {holder.get('host')!r} (lease renewed "
            f"{age:.0f} s ago, expires after {float(holder.get('lease_s', 0)):.0f} s)")

  def _stale(self, holder: dict) -> bool:
    if time.time() - float(holder.get("renewed", 0)) > float(holder.get("lease_s", 0)):
      return True
    return holder.get("host") == self._record["host"] and not _pid_alive(int(holder.get("pid", -1)))

  def acquire(self) -> "WorkdirLock":
    """Takes the lock (or a stale one over) and starts renewing it."""
    current = self._store.read(LOCK_KEY).result()
    if current.state == "missing":
      generation = self._write(if_equal=_ABSENT)
    else:
      try:
        holder = json.loads(current.value)
      except ValueError:
        holder = {}  # An unreadable lock (e.g. cut short): treat as stale.
      if holder and not self._stale(holder):
        raise WorkdirLocked(f"Workdir {self.workdir} is in use by {self._describe(holder)}. "
                            "Wait for that run to finish, or use another --workdir.")
      generation = self._write(if_equal=current.stamp.generation)
      if generation:
        logging.warning("Took over the stale lock %s of %s.", self.path,
                        self._describe(holder) if holder else "an unreadable record")
    if not generation:
      raise WorkdirLocked(f"Workdir {self.workdir}: another run took the lock {self.path} at "
                          "the same moment; use another --workdir or wait for it to finish.")
    self._generation, self._renewed = generation, time.monotonic()
    self._stop.clear()
    self._thread = threading.Thread(target=self._renew_loop, name="workdir_lock", daemon=True)
    self._thread.start()
    return self

  def _renew_loop(self) -> None:
    while not self._stop.wait(self.lease_s / 4):
      assert self._generation is not None  # acquire sets it before starting this thread.
      try:
        generation = self._write(if_equal=self._generation)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("Could not renew the workdir lock %s (retrying): %s", self.path, e)
        continue
      if not generation:
        current = self._store.read(LOCK_KEY).result()
        holder = json.loads(current.value) if current.state == "value" else {}
        self._lost = (f"Workdir {self.workdir}: this run's lock was taken over by "
                      f"{self._describe(holder) if holder else 'nobody (it was deleted)'}; "
                      "stopping so that two runs never write one workdir.")
        return
      self._generation, self._renewed = generation, time.monotonic()

  def check(self) -> None:
    """Raises ``WorkdirLocked`` if the lease was taken over, or not renewed for ``lease_s``."""
    if self._lost:
      raise WorkdirLocked(self._lost)
    if time.monotonic() - self._renewed > self.lease_s:
      raise WorkdirLocked(f"Workdir {self.workdir}: this run could not renew its lock {self.path} "
                          f"for {self.lease_s:.0f} s, so another run may own the workdir now; "
                          "stopping.")

  def release(self) -> None:
    """Stops renewing and deletes the lock if it is still ours."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    if self._generation and not self._lost:
      self._store.write(LOCK_KEY, None, if_equal=self._generation).result()
    self._generation = None

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
