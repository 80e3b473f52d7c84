r"""Training input pipeline throughput, next to the cost of decode-and-crop alone.

  PYTHONPATH=. python benchmarks/input_pipeline.py --cifar_dir=/tmp/cifar10

``--cifar_dir`` is CIFAR-10 as an image folder (``python -m
sam_jax.data.make_cifar10_folder --out=/tmp/cifar10``). ImageNet-sized JPEGs (``--num_images`` of 500 x 375 random
scenes, quality 90, about 115 KB each) are generated into a temporary folder. For each
dataset and core count, a child process pinned to that many cores (so tf.data's
AUTOTUNE sees them) measures, on the same files:

  decode_and_crop: read the file, sample the Inception window,
    tf.image.decode_and_crop_jpeg; nothing else (the floor of any such pipeline);
  + cast + resize: the same, resized to float32 S x S, batched into numpy;
  pipeline: sam_jax.data.input_pipeline.train_iterator, i.e. the above plus flip,
    [-1, 1], per-epoch shuffle, labels;
  + RandAugment + mixup (``--augment``): the pipeline with ``config.augment`` of
    configs/cifar10_augment.py, RandAugment(2, 15) and mixup 0.5.

It prints a markdown table of images/s per core: the wall-clock rate divided by
the cores, and images per CPU-second of the process (less sensitive to other
load on a shared machine); each the best of ``--repeats`` interleaved
measurements of ``--seconds``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def make_jpegs(root: str, num_images: int, size=(375, 500)) -> None:
  """``root/train/<class>/<i>.jpg``: random scenes with detail at four scales.

  At quality 90 they average about 115 KB, like ImageNet's training JPEGs (about
  140 GB for 1.28 M images), so decoding costs about as much.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for i in range(num_images):
    image = np.full(size + (3,), 128, np.float32)
    for grid, amplitude in (((6, 8), 60), ((24, 32), 40), ((94, 125), 30), (size, 20)):
      noise = rng.normal(0, 1, grid + (3,)).astype(np.float32)
      image += amplitude * np.stack([np.asarray(Image.fromarray(noise[..., c], mode="F").resize(
          size[::-1], Image.BICUBIC)) for c in range(3)], axis=-1)
    class_dir = os.path.join(root, "train", f"class_{i % 10}")
    os.makedirs(class_dir, exist_ok=True)
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(
        os.path.join(class_dir, f"{i:05d}.jpg"), quality=90)


def _measure(batches, batch_size: int, warmup: int, seconds: float) -> tuple[float, float]:
  """(images per wall-clock second, images per CPU-second of this process)."""
  for _ in range(warmup):
    next(batches)
  count, wall, cpu = 0, time.perf_counter(), time.process_time()
  while time.perf_counter() - wall < seconds:
    next(batches)
    count += batch_size
  return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def child(args: argparse.Namespace) -> None:
  """Runs in a process pinned to ``args.cores`` cores; prints one JSON line."""
  os.sched_setaffinity(0, range(args.cores))
  import ml_collections  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from sam_jax.data import image_folder, input_pipeline, preprocessing  # pylint: disable=g-import-not-at-top

  config = ml_collections.ConfigDict(dict(
      dataset="folder", data_dir=args.root, train_split="train", image_size=args.image_size,
      pp={}))
  options = preprocessing.PreprocessOptions.from_config(config)
  paths = tf.constant(image_folder.ImageFolder(args.root, class_split="train").files("train")[0])

  def decode_and_crop(position):
    image_bytes = tf.io.read_file(paths[position % len(paths)])
    offset, size = preprocessing.inception_crop_window(
        tf.image.extract_jpeg_shape(image_bytes), tf.stack([tf.constant(0, tf.int64), position]),
        options)
    return tf.image.decode_and_crop_jpeg(image_bytes, tf.concat([offset, size], 0), channels=3)

  def batches(fn):
    ds = tf.data.Dataset.range(2**62).map(fn, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(args.batch_size).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()

  streams = {
      "decode_and_crop": batches(lambda p: tf.shape(decode_and_crop(p))),
      "+resize": batches(lambda p: tf.image.resize(
          tf.cast(decode_and_crop(p), tf.float32), [args.image_size] * 2)),
      "pipeline": input_pipeline.train_iterator(config, local_batch_size=args.batch_size, seed=0,
                                                process_index=0, process_count=1)}
  if args.augment:
    augmented = config.copy_and_resolve_references()
    augmented.augment = dict(randaugment_layers=2, randaugment_magnitude=15.0, mixup_alpha=0.5)
    streams["augmented"] = input_pipeline.train_iterator(
        augmented, local_batch_size=args.batch_size, seed=0, process_index=0, process_count=1)
  results = {name: [] for name in streams}
  for _ in range(args.repeats):  # Interleaved, so all see the same machine load.
    for name, stream in streams.items():
      results[name].append(_measure(stream, args.batch_size, 3, args.seconds))
  # Best of the repeats: on a shared machine other load only ever slows a measurement down.
  print(json.dumps({k: np.max(v, axis=0).tolist() for k, v in results.items()}))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cifar_dir", required=True, help="CIFAR-10 image folder root.")
  parser.add_argument("--num_images", type=int, default=300)
  parser.add_argument("--cores", default="1,2", help="Comma-separated core counts.")
  parser.add_argument("--seconds", type=float, default=4.0, help="Per measurement.")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--augment", action="store_true",
                      help="Also the pipeline with RandAugment(2, 15) + mixup 0.5.")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--root", help=argparse.SUPPRESS)
  parser.add_argument("--image_size", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--batch_size", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    args.cores = int(args.cores)
    child(args)
    return

  with tempfile.TemporaryDirectory() as tmp:
    make_jpegs(tmp, args.num_images)
    datasets = [(f"ImageNet-sized JPEGs ({args.num_images}, 500x375 -> 224)", tmp, 224, 128),
                ("CIFAR-10 folder (50,000 train, 32x32 -> 32)", args.cifar_dir, 32, 256)]
    print("Images/s per core (best of the repeats): wall-clock rate / cores, and images per "
          "CPU-second of the process.")
    print()
    augmented = " + RandAugment + mixup | augmented / pipeline |" if args.augment else ""
    print("| data | cores | decode-and-crop alone | + cast + resize, batched | full pipeline | "
          f"pipeline / decode-and-crop |{augmented}")
    print("|---|---|---|---|---|---|" + ("---|---|" if args.augment else ""))
    for name, root, image_size, batch_size in datasets:
      for cores in [int(c) for c in args.cores.split(",")]:
        out = subprocess.run(
            [sys.executable, __file__, "--child", f"--cifar_dir={args.cifar_dir}",
             f"--root={root}", f"--cores={cores}", f"--image_size={image_size}",
             f"--batch_size={batch_size}", f"--seconds={args.seconds}",
             f"--repeats={args.repeats}"] + (["--augment"] if args.augment else []),
            capture_output=True, text=True, check=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        r = json.loads(out.stdout.strip().splitlines()[-1])
        cells = [f"{wall / cores:,.0f} wall, {cpu:,.0f} CPU" for wall, cpu in r.values()]
        (floor_wall, floor_cpu), (wall, cpu) = r["decode_and_crop"], r["pipeline"]
        cells.insert(3, f"{wall / floor_wall:.2f} wall, {cpu / floor_cpu:.2f} CPU")
        if args.augment:
          aug_wall, aug_cpu = r["augmented"]
          cells.append(f"{aug_wall / wall:.2f} wall, {aug_cpu / cpu:.2f} CPU")
        print(f"| {name} | {cores} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
  main()
