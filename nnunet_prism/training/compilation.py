"""The trainers' torch.compile step and dynamo's counts of what it compiled.

nnU-Net compiles the whole network on CUDA (``nnUNetTrainer.initialize``:
``torch.compile(network)`` unless ``nnUNet_compile`` says otherwise). A network of ours whose
forward has data-dependent shapes offers ``compile_regions`` (``networks.regions``): the
trainers then compile its regions instead (``compile_network``) and say so in one log line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch._dynamo import OptimizedModule
from torch._dynamo.utils import counters

#: what ``compile_mode`` reports
WHOLE, REGIONS, OFF = "whole network", "regions", "off"


def compile_network(network: torch.nn.Module, log: Callable[[str], None]) -> torch.nn.Module:
    """The network as the trainer should train it, given what nnU-Net made of it: nnU-Net's
    ``torch.compile`` wrapper is replaced by the network's own ``compile_regions`` where it has
    one; otherwise the network is returned as it is. Logs one line when compiling."""
    if not isinstance(network, OptimizedModule):
        return network
    inner = network._orig_mod
    if not hasattr(inner, "compile_regions"):
        log(f"torch.compile: {WHOLE} (nnU-Net's torch.compile of {type(inner).__name__})")
        return network
    log(f"torch.compile: {type(inner).__name__} {inner.compile_regions()}, instead of the whole network "
        "(its shapes depend on the modality mask)")
    return inner


def compile_mode(network: torch.nn.Module) -> str:
    """WHOLE, REGIONS or OFF for a trainer's network (DDP's wrapper looked through)."""
    network = getattr(network, "module", network)
    if isinstance(network, OptimizedModule):
        return WHOLE
    return REGIONS if getattr(network, "regions_compiled", False) else OFF


@dataclass(frozen=True)
class DynamoCounts:
    """dynamo's process-wide counters (``torch._dynamo.utils.counters``): graphs compiled and
    graph breaks met while compiling. ``later - earlier`` gives what happened in between."""
    graphs: int
    graph_breaks: int

    @classmethod
    def now(cls) -> "DynamoCounts":
        return cls(int(counters["stats"].get("unique_graphs", 0)), int(sum(counters["graph_break"].values())))

    def __sub__(self, other: "DynamoCounts") -> "DynamoCounts":
        return DynamoCounts(self.graphs - other.graphs, self.graph_breaks - other.graph_breaks)

    @staticmethod
    def break_reasons() -> list:
        """The graph-break messages met so far (first line of each), most frequent first."""
        return [reason.splitlines()[0] for reason, _ in counters["graph_break"].most_common()]
