r"""The PyTorch side of ``peer_comparison.py``: timm + a two-pass SAM step, driven over stdin.

Runs under a separate Python that has ``torch`` and ``timm`` (never a dependency of
sam_jax). Reads one JSON command per line on stdin and answers one JSON line on stdout:

  {"op": "setup", "model": "vit_small_patch16_224", "batch": 16, "rho": 0.05, "lr": 3e-3,
   "weight_decay": 0.3}
  {"op": "step"}            -> {"seconds", "minflt", "cpu_seconds"}  (one SAM step)
  {"op": "matmul", "n": 2048, "repeats": 3} -> {"gflops"}  (best of repeats, fp32)
  {"op": "info"}            -> {"torch", "timm", "threads"}

The SAM step is the algorithm of davda54/sam (the popular PyTorch SAM), written out:

  g = grad L(w);  e = rho * g / (||g||_2 + 1e-12);  w <- w + e
  g_sam = grad L(w + e)   (BatchNorm running statistics frozen in this pass)
  w <- w (restored from a copy);  clip ||g_sam|| to 1;  AdamW step with g_sam.
"""

import json
import resource
import sys
import time

import timm
import torch
import torch.nn.functional as F


class SamStep:
  """A timm model, AdamW and the two-pass SAM step on one fixed batch."""

  def __init__(self, model: str, batch: int, rho: float, lr: float, weight_decay: float):
    torch.manual_seed(0)
    self.model = timm.create_model(model, num_classes=1000).train()
    self.params = [p for p in self.model.parameters() if p.requires_grad]
    self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
    self.rho = rho
    self.images = torch.rand(batch, 3, 224, 224) * 2 - 1
    self.labels = torch.randint(0, 1000, (batch,))
    self.norms = [m for m in self.model.modules()
                  if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

  def _backward(self) -> None:
    F.cross_entropy(self.model(self.images), self.labels).backward()

  def __call__(self) -> None:
    self._backward()
    with torch.no_grad():
      grads = [p.grad for p in self.params]
      scale = self.rho / (torch.linalg.vector_norm(torch.stack(
          [torch.linalg.vector_norm(g) for g in grads])) + 1e-12)
      old = [p.detach().clone() for p in self.params]
      for p, g in zip(self.params, grads):
        p.add_(g * scale)
    self.opt.zero_grad(set_to_none=True)
    momenta = [m.momentum for m in self.norms]
    for m in self.norms:
      m.momentum = 0.0  # davda54/sam's disable_running_stats for the second pass.
    self._backward()
    for m, momentum in zip(self.norms, momenta):
      m.momentum = momentum
    with torch.no_grad():
      for p, w in zip(self.params, old):
        p.copy_(w)
    torch.nn.utils.clip_grad_norm_(self.params, 1.0)
    self.opt.step()
    self.opt.zero_grad(set_to_none=True)


def matmul_gflops(n: int, repeats: int) -> float:
  """Best fp32 [n, n] @ [n, n] rate over ``repeats`` timings."""
  a, b = torch.rand(n, n), torch.rand(n, n)
  a @ b
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best / 1e9


def main() -> None:
  step = None
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "setup":
      step = SamStep(cmd["model"], cmd["batch"], cmd["rho"], cmd["lr"], cmd["weight_decay"])
      out = {"params": sum(p.numel() for p in step.params)}
    elif cmd["op"] == "step":
      before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
      step()
      seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
      out = {"seconds": seconds, "minflt": after.ru_minflt - before.ru_minflt,
             "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}
    elif cmd["op"] == "matmul":
      out = {"gflops": matmul_gflops(cmd["n"], cmd["repeats"])}
    elif cmd["op"] == "info":
      out = {"torch": torch.__version__, "timm": timm.__version__,
             "threads": torch.get_num_threads()}
    else:
      raise ValueError(f"unknown op {cmd['op']!r}; expected setup, step, matmul or info.")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
  main()
