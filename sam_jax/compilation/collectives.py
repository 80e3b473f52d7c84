"""The collectives of a compiled program, read from its HLO text: kind, count, bytes, group size.

An instruction such as ``%ar = (f32[768]{0}, f32[3]{0}) all-reduce(...),
replica_groups={{0,1},{2,3}}`` (or the iota form ``replica_groups=[4,2]<=[8]``) counts
once, with the bytes of its result and the size of its device groups; an asynchronous pair
(``all-reduce-start`` ... ``all-reduce-done``) counts once, at its start.
"""

import collections
import dataclasses
import re

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4,
          "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_INSTRUCTION = re.compile(
    r"=\s*(?P<shape>\(.*?\)|\S+)\s+(?P<kind>" + "|".join(KINDS) + r")(?:-start)?\(")
_ARRAY = re.compile(r"\b([a-z]+\d*)\[([\d,]*)\]")
_GROUPS_LIST = re.compile(r"replica_groups=\{(\{[\d,]*\})")
_GROUPS_IOTA = re.compile(r"replica_groups=\[([\d,]+)\]")


@dataclasses.dataclass(frozen=True, order=True)
class Collective:
  """One kind of collective over groups of one size: how many, and their bytes in all."""
  kind: str
  group_size: int
  count: int
  bytes: int


def _shape_bytes(shape: str) -> int:
  total = 0
  for dtype, dims in _ARRAY.findall(shape):
    if dtype in _BYTES:
      size = 1
      for d in filter(None, dims.split(",")):
        size *= int(d)
      total += size * _BYTES[dtype]
  return total


def _group_size(line: str, num_devices: int) -> int:
  listed = _GROUPS_LIST.search(line)
  if listed:
    members = listed.group(1).strip("{}")
    return len(members.split(",")) if members else num_devices
  iota = _GROUPS_IOTA.search(line)
  if iota:
    return int(iota.group(1).split(",")[-1])
  return num_devices  # No groups (collective-permute) or all devices.


def collectives(hlo_text: str, num_devices: int) -> list[Collective]:
  """Every collective of ``hlo_text`` grouped by (kind, group size), sorted."""
  counts, sizes = collections.Counter(), collections.Counter()
  for line in hlo_text.splitlines():
    found = _INSTRUCTION.search(line)
    if found:
      key = (found.group("kind"), _group_size(line, num_devices))
      counts[key] += 1
      sizes[key] += _shape_bytes(found.group("shape"))
  return sorted(Collective(kind, group, counts[kind, group], sizes[kind, group])
                for kind, group in counts)
