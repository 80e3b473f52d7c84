"""Renders the rows of ``experiments/settings/run.py`` into docs/settings.md and its figures.

  python experiments/settings/report.py

Each setting's table (between ``<!-- settings:SETTING:begin -->`` and ``...:end -->``
markers in docs/settings.md) lists its demos: test accuracy on the eval split, clean,
FGSM and PGD accuracy on the attacked test images, and the CPU minutes of training; the
figure ``docs/settings/SETTING.png`` plots the same accuracies as bars.
"""

import glob
import json
import os
import re

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

import run  # pylint: disable=g-bad-import-order  (experiments/settings/run.py)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(ROOT, "docs", "settings.md")
FIGURES = os.path.join(ROOT, "docs", "settings")
METRICS = (("test", "test accuracy"), ("clean", "clean accuracy (attacked images)"),
           ("fgsm", "FGSM accuracy"), ("pgd", "PGD accuracy"))


def rows() -> list[dict]:
  found = []
  for path in sorted(glob.glob(os.path.join(HERE, "results", "*.json"))):
    with open(path) as f:
      found.append(json.load(f))
  order = list(run.DEMOS)
  return sorted(found, key=lambda row: order.index(row["name"]))


def accuracies(row: dict) -> dict[str, float]:
  """Test accuracy on the eval split and the attacks' accuracies (empty without evaluation)."""
  if "evaluation" not in row:
    return {}
  (run,) = row["evaluation"]["runs"].values()
  (test,) = run["eval"].values()
  adversarial = run["adversarial"]
  return {"test": test["accuracy"], "clean": adversarial["clean_accuracy"],
          "fgsm": adversarial["fgsm_accuracy"], "pgd": adversarial["pgd_accuracy"]}


def table(setting_rows: list[dict]) -> str:
  lines = ["| demo | " + " | ".join(name for _, name in METRICS) + " | training CPU min |",
           "|---" * (len(METRICS) + 2) + "|"]
  for row in setting_rows:
    acc = accuracies(row)
    cells = [f"{acc[k]:.3f}" if k in acc else "—" for k, _ in METRICS]
    lines.append(f"| {row['label']} | " + " | ".join(cells) +
                 f" | {row['train_cpu_seconds'] / 60:.1f} |")
  return "\n".join(lines)


def figure(setting: str, setting_rows: list[dict]) -> None:
  scored = [(row["label"], accuracies(row)) for row in setting_rows if "evaluation" in row]
  if not scored:
    return
  fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(scored), 3.2))
  width = 0.8 / len(METRICS)
  for i, (key, name) in enumerate(METRICS):
    ax.bar([j + i * width for j in range(len(scored))], [acc[key] for _, acc in scored],
           width, label=name)
  ax.set_xticks([j + width for j in range(len(scored))], [label for label, _ in scored],
                rotation=20, ha="right", fontsize=8)
  ax.set_ylabel("accuracy")
  ax.set_ylim(0, 1)
  ax.set_title(f"{setting} (docs/settings.md)")
  ax.legend(fontsize=7, ncol=len(METRICS), loc="upper center")
  fig.tight_layout()
  os.makedirs(FIGURES, exist_ok=True)
  fig.savefig(os.path.join(FIGURES, f"{setting}.png"), dpi=120)
  plt.close(fig)


def main() -> None:
  with open(DOC) as f:
    doc = f.read()
  by_setting: dict[str, list[dict]] = {}
  for row in rows():
    by_setting.setdefault(row["setting"], []).append(row)
  for setting, setting_rows in by_setting.items():
    pattern = re.compile(rf"(<!-- settings:{setting}:begin -->\n).*?(<!-- settings:{setting}:end -->)",
                         re.S)
    if not pattern.search(doc):
      raise ValueError(f"{DOC} has no markers for the setting {setting!r}.")
    text = table(setting_rows)
    doc = pattern.sub(lambda m, t=text: m.group(1) + t + "\n" + m.group(2), doc)
    figure(setting, setting_rows)
  all_rows = rows()
  cpu = sum(r["train_cpu_seconds"] + r.get("eval_cpu_seconds", 0.0) for r in all_rows) / 3600
  wall = sum(r["train_wall_seconds"] + r.get("eval_wall_seconds", 0.0) for r in all_rows) / 3600
  budget = (f"{len(all_rows)} rows, {cpu:.2f} CPU-hours in all, training and evaluation "
            f"({wall:.2f} hours of wall time summed over rows, which ran two or three at a "
            "time).\n")
  doc = re.sub(r"(<!-- settings:budget:begin -->\n).*?(<!-- settings:budget:end -->)",
               lambda m: m.group(1) + budget + m.group(2), doc, flags=re.S)
  with open(DOC, "w") as f:
    f.write(doc)


if __name__ == "__main__":
  main()
