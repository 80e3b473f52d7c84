"""One compiled step for a TPU slice: its memory per core, its cost, its collectives.

``compile_program(step, args)`` lowers and compiles ``step`` on abstract arguments
(``jax.ShapeDtypeStruct`` with their shardings: nothing is allocated) and reads the
executable's ``memory_analysis()`` (bytes per core), ``cost_analysis()`` (FLOPs and bytes
accessed per core) and HLO text (``collectives``). A program that does not fit the core's
HBM fails to compile with XLA's ``RESOURCE_EXHAUSTED``; its message is kept.

Collectives are read twice: as the program asks for them (the lowered HLO, before XLA's
passes: one per ``psum``/``pmean``) and as the executable runs them (XLA combines small
ones and may split one into stages along the slice's chips and cores, e.g. an all-reduce
over 8 v3 cores into 2 + 4 + 2).

Per core the program holds its arguments, its outputs and its temporaries at once, less the
outputs written in place of donated arguments (the train step's state):

    total = arguments + outputs - aliased + temporaries + generated code
"""

import dataclasses
import re
import time
from typing import Any, Callable

import jax

from sam_jax.compilation.collectives import Collective, collectives

# XLA's out-of-memory messages: "Used 21.2G of 15.5G hbm" or "... required for HLO
# temporaries (92.60G) exceeds available HBM (15.48G)" (then the temporaries alone).
_NEEDED = re.compile(r"Used ([\d.]+)([KMGT]) of|required for HLO temporaries \(([\d.]+)([KMGT])\)")
_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclasses.dataclass(frozen=True)
class Program:
  """A compiled (or failed) program's figures, per core."""
  compile_seconds: float
  error: str | None = None        # XLA's message when it does not fit.
  memory: dict[str, int] = dataclasses.field(default_factory=dict)  # memory_analysis() bytes.
  flops: float = 0.0              # XLA's, its micro-batch loop counted ``loop_trips`` times.
  bytes_accessed: float = 0.0     # Likewise.
  loop_trips: int = 1             # Micro-batches (gradient accumulation).
  collectives: tuple[Collective, ...] = ()          # Of the executable.
  program_collectives: tuple[Collective, ...] = ()  # As lowered, before XLA's passes.

  @property
  def total_bytes(self) -> int | None:
    """Bytes the core holds while it runs (see the module); out of memory, XLA's figure (its
    temporaries alone, a lower bound, if that is all it names); None if XLA did not say."""
    if self.memory:
      m = self.memory
      return m["argument"] + m["output"] - m["alias"] + m["temp"] + m["generated_code"]
    needed = _NEEDED.search(self.error or "")
    if not needed:
      return None
    number, unit = needed.group(1, 2) if needed.group(1) else needed.group(3, 4)
    return int(float(number) * _UNITS[unit])


def _memory(compiled) -> dict[str, int]:
  analysis = compiled.memory_analysis()
  return {name: int(getattr(analysis, f"{name}_size_in_bytes"))
          for name in ("argument", "output", "alias", "temp", "generated_code")}


def _cost(compiled) -> dict[str, float]:
  cost = compiled.cost_analysis()
  return cost[0] if isinstance(cost, (list, tuple)) else cost


def lowered_collectives(lowered, num_devices: int) -> tuple[Collective, ...]:
  """The collectives a lowered program asks for (no compile)."""
  return tuple(collectives(lowered.as_text(dialect="hlo"), num_devices))


def compile_program(step: Callable, args: tuple[Any, ...], num_devices: int,
                    loop_trips: int = 1) -> Program:
  """``step`` (a ``jax.jit`` function) compiled on the abstract ``args``.

  XLA's cost analysis counts a loop's body once (measured on a v3 compile: a ``lax.scan`` of
  4 matmuls counts as one), so a step of ``loop_trips`` micro-batches has its FLOPs and bytes
  multiplied by them: an upper bound, the update outside the loop counted that many times too.

  Raises:
    jax.errors.JaxRuntimeError: a compile error other than running out of memory.
  """
  start = time.perf_counter()
  lowered = step.lower(*args)
  asked = lowered_collectives(lowered, num_devices)
  try:
    compiled = lowered.compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    return Program(time.perf_counter() - start, error=str(e).strip(), loop_trips=loop_trips,
                   program_collectives=asked)
  seconds = time.perf_counter() - start
  cost = _cost(compiled)
  return Program(seconds, memory=_memory(compiled),
                 flops=loop_trips * float(cost.get("flops", 0.0)),
                 bytes_accessed=loop_trips * float(cost.get("bytes accessed", 0.0)),
                 loop_trips=loop_trips,
                 collectives=tuple(collectives(compiled.as_text(), num_devices)),
                 program_collectives=asked)
