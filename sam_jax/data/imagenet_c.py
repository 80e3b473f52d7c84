"""ImageNet-C (Hendrycks & Dietterich 2019): 19 corruptions x 5 severities of ImageNet val.

TFDS names them ``imagenet2012_corrupted/<corruption>_<severity>`` (split
``validation``; images already resized and centrally cropped to 224 x 224). The
paper reports accuracy averaged over all 95: with a_{c,s} the top-1 accuracy on
corruption c at severity s,

  per corruption: A_c = mean_s a_{c,s};   overall: A = mean_c A_c = mean_{c,s} a_{c,s}.
"""

from typing import Mapping

# The 15 corruptions of the benchmark, then TFDS's 4 extra ones.
BENCHMARK_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform",
    "pixelate", "jpeg_compression")
EXTRA_CORRUPTIONS = ("gaussian_blur", "saturate", "spatter", "speckle_noise")
CORRUPTIONS = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES = (1, 2, 3, 4, 5)
SPLIT = "validation"


def dataset_name(corruption: str, severity: int) -> str:
  """The TFDS name of one corruption at one severity."""
  if corruption not in CORRUPTIONS or severity not in SEVERITIES:
    raise ValueError(f"ImageNet-C has no {corruption!r} at severity {severity!r}; corruptions: "
                     f"{CORRUPTIONS}, severities: {SEVERITIES}.")
  return f"imagenet2012_corrupted/{corruption}_{severity}"


def dataset_names(corruptions: tuple[str, ...] = CORRUPTIONS) -> list[str]:
  """TFDS names of ``corruptions`` at every severity (95 for all 19)."""
  return [dataset_name(c, s) for c in corruptions for s in SEVERITIES]


def summarize(accuracies: Mapping[str, float],
              corruptions: tuple[str, ...] = CORRUPTIONS) -> dict[str, float]:
  """Per-corruption means over the 5 severities and their overall ``"mean"``.

  Args:
    accuracies: accuracy per TFDS name (``dataset_names()``); each of
      ``corruptions`` x ``SEVERITIES`` must be present.
    corruptions: which corruptions to average (``BENCHMARK_CORRUPTIONS`` for the 15
      of the original benchmark).
  """
  names = dataset_names(corruptions)
  missing = [n for n in names if n not in accuracies]
  if missing:
    raise ValueError(f"ImageNet-C summary needs all {len(names)} results; missing "
                     f"{len(missing)}: {missing[:5]}{' ...' if len(missing) > 5 else ''}.")
  summary = {c: sum(accuracies[dataset_name(c, s)] for s in SEVERITIES) / len(SEVERITIES)
             for c in corruptions}
  summary["mean"] = sum(summary[c] for c in corruptions) / len(corruptions)
  return summary
