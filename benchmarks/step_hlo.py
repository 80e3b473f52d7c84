r"""What our compiled SAM step adds to a hand-written one: XLA's op counts and cost analysis.

Compiles the two steps of ``peer_comparison.py`` (ours as ``training.loop`` builds it, and
the minimal jitted SAM step with the same model, loss, clipping and AdamW) for one model and
batch size and prints the optimised HLO's instruction counts by opcode where they differ,
and XLA's FLOPs and bytes accessed for each. No timing: this runs on a loaded machine too.

  PYTHONPATH=. python benchmarks/step_hlo.py --model=resnet:50 --batch_size=16
"""

from sam_jax.training import cpu_runtime

cpu_runtime.configure()

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import collections
import re

import peer_comparison  # pylint: disable=g-bad-import-order  (benchmarks/peer_comparison.py)


def opcodes(hlo: str) -> collections.Counter:
  """Instruction count per opcode of an HLO module's text."""
  return collections.Counter(re.findall(r"= \S+ ([a-z][\w-]*)\(", hlo))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="resnet:50", choices=[":".join(k) for k in
                                                              peer_comparison.TIMM_NAMES])
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--rho", type=float, default=0.05)
  args = parser.parse_args()
  name, variant = args.model.split(":")
  config = peer_comparison.benchmark_config(name, variant, args.batch_size, args.rho)
  batch = peer_comparison.synthetic_batch(args.batch_size)
  ours = peer_comparison.compile_ours(config, batch)[0]
  step, state = peer_comparison.handwritten_step(config, batch)
  hand = step.lower(state).compile()
  counts = {"ours": opcodes(ours.as_text()), "hand-written": opcodes(hand.as_text())}
  costs = {"ours": ours.cost_analysis(), "hand-written": hand.cost_analysis()}
  print(f"{args.model} batch {args.batch_size}, SAM rho {args.rho}")
  print("| | ours | hand-written | ours / hand-written |\n|---|---:|---:|---:|")
  for field in ("flops", "bytes accessed"):
    a, b = costs["ours"][field], costs["hand-written"][field]
    print(f"| {field} | {a:.4g} | {b:.4g} | {a / b:.3f} |")
  for op in sorted(set().union(*counts.values()), key=lambda k: -counts["ours"][k]):
    a, b = counts["ours"][op], counts["hand-written"][op]
    if a != b:
      print(f"| {op} instructions | {a} | {b} | {a / b if b else float('inf'):.2f} |")


if __name__ == "__main__":
  main()
