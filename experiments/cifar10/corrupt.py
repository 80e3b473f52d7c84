r"""Common corruptions of CIFAR-10 test images, as image-folder splits, for the study's rows.

  pip install imagecorruptions   # (the "study" extra of setup.py)
  python experiments/cifar10/corrupt.py --data_dir=/tmp/cifar10

Writes ``<data_dir>/corrupted/<corruption>_<severity>/<class>/<image>.png`` for the first
``--per_class`` test images of each class (the split ``test[:N/class]``), each corruption of
``CORRUPTIONS`` at severities 1-5, with ``imagecorruptions`` (Michaelis et al. 2019, the
ImageNet-C code of Hendrycks & Dietterich 2019 as a package). Each image's noise is seeded
by its file, corruption and severity, so the folder is the same on every machine with the
same library versions. PNG: the corruption is stored without loss. ``run.py`` scores each
split (``folder:corrupted/fog_3``...).

Left out: ``glass_blur`` and ``fog``, which imagecorruptions 1.1.2 (its latest release)
cannot compute with NumPy 2 and scikit-image >= 0.19 (``np.float_``; ``gaussian(...,
multichannel=)``). The severities are ImageNet-C's, set for 224-px images; on 32-px images
the blurs are relatively stronger (CIFAR-10-C has its own, unpublished-here settings).
"""

import os
import time
import zlib

from absl import app, flags, logging
import numpy as np
from PIL import Image

CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "brightness", "contrast", "elastic_transform",
               "pixelate", "jpeg_compression")
SEVERITIES = (1, 2, 3, 4, 5)
FOLDER = "corrupted"

FLAGS = flags.FLAGS


def split_names() -> list[str]:
  """The image-folder splits this script writes, e.g. ``corrupted/fog_3``."""
  return [f"{FOLDER}/{c}_{s}" for c in CORRUPTIONS for s in SEVERITIES]


def _seed(path: str, corruption: str, severity: int) -> int:
  return zlib.crc32(f"{path}|{corruption}|{severity}".encode())


def main(argv: list[str]) -> None:
  del argv
  from imagecorruptions import corrupt  # pylint: disable=g-import-not-at-top
  source = os.path.join(FLAGS.data_dir, FLAGS.split)
  if not os.path.isdir(source):
    raise app.UsageError(f"--data_dir={FLAGS.data_dir!r} has no {FLAGS.split}/ folder.")
  classes = sorted(d for d in os.listdir(source) if os.path.isdir(os.path.join(source, d)))
  files = {c: sorted(f for f in os.listdir(os.path.join(source, c))
                     if not f.startswith("."))[:FLAGS.per_class] for c in classes}
  short = {c: len(f) for c, f in files.items() if len(f) < FLAGS.per_class}
  if short:
    raise app.UsageError(f"--per_class={FLAGS.per_class}: class(es) {short} have fewer images.")
  total, done, start = sum(map(len, files.values())), 0, time.time()
  for cls, names in files.items():
    for name in names:
      relative = os.path.join(FLAGS.split, cls, name)
      image = np.asarray(Image.open(os.path.join(FLAGS.data_dir, relative)).convert("RGB"))
      for split in split_names():
        corruption, severity = split.split("/")[1].rsplit("_", 1)
        np.random.seed(_seed(relative, corruption, int(severity)))
        out = corrupt(image, corruption_name=corruption, severity=int(severity))
        target = os.path.join(FLAGS.data_dir, split, cls, os.path.splitext(name)[0] + ".png")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        Image.fromarray(np.uint8(out)).save(target)
      done += 1
      rate = done / (time.time() - start)
      logging.log_every_n_seconds(logging.INFO, "corrupt: %d of %d images, %.1f images/s, ETA "
                                  "%.0f s.", 20, done, total, rate, (total - done) / rate)
  print(f"Wrote {len(split_names())} splits of {total} images under "
        f"{os.path.join(FLAGS.data_dir, FOLDER)} in {time.time() - start:.0f} s.")


if __name__ == "__main__":  # Flags only here: run.py imports this module for split_names.
  flags.DEFINE_string("data_dir", None, "The CIFAR-10 folder (train/ and test/).", required=True)
  flags.DEFINE_string("split", "test", "The folder of the images to corrupt.")
  flags.DEFINE_integer("per_class", 100, "Images of each class (the first, in sorted order).")
  app.run(main)
