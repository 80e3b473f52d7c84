"""Forward-pass GFLOPs per image from XLA's cost analysis, next to the published figures.

    cd /work/main && PYTHONPATH=. python benchmarks/model_flops.py [--image_size 224] [--batch 8]

Nothing is allocated: parameters and images are abstract (``jax.eval_shape``), the
evaluation-mode forward pass is lowered and compiled for the local backend, and
``compiled.cost_analysis()["flops"]`` is divided by the batch size. Published figures
are multiply-adds (MACs); XLA counts a multiply-add as two FLOPs, plus the elementwise
work (LayerNorm, softmax, GELU, BatchNorm, pooling), so the ratio XLA / (2 x MACs)
should be slightly above 1.
"""

import argparse

import jax
import jax.numpy as jnp

from sam_jax.models import create_model

# (family, variant) -> commonly published forward GMACs per 224 px image.
PUBLISHED_GMACS = {("vit", "S/16"): 4.6, ("vit", "B/16"): 17.6, ("mixer", "B/16"): 12.6,
                   ("resnet", "50"): 4.1}


def forward_cost(name: str, variant: str, image_size: int, batch: int) -> tuple[int, float, float]:
  """(parameters, GFLOPs per image, G transcendentals per image) of the eval forward pass."""
  model = create_model(name, variant, num_classes=1000)
  images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  cost = forward.lower(variables, images).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  params = sum(x.size for x in jax.tree.leaves(variables["params"]))
  return params, cost["flops"] / batch / 1e9, cost.get("transcendentals", 0.0) / batch / 1e9


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--image_size", type=int, default=224)
  parser.add_argument("--batch", type=int, default=8)
  args = parser.parse_args()
  print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"image {args.image_size} px, batch {args.batch}\n")
  print("| model | params | XLA GFLOPs/image | published GMACs | XLA / (2 x MACs) "
        "| G transcendentals/image |")
  print("|---|---:|---:|---:|---:|---:|")
  for (name, variant), gmacs in PUBLISHED_GMACS.items():
    params, gflops, trans = forward_cost(name, variant, args.image_size, args.batch)
    print(f"| {name} {variant} | {params:,} | {gflops:.2f} | {gmacs} | "
          f"{gflops / (2 * gmacs):.3f} | {trans:.4f} |")


if __name__ == "__main__":
  main()
