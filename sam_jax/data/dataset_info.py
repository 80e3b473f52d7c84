"""What the train loop needs to know about a dataset before reading it."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  num_classes: int
  eval_num_examples: int
