"""Time, CPU hours and GPU hours of a run from the throughputs recorded on a machine class: a fixed part (start-up,
model loading, outputs), planning (grows with the region's blocks) and a part a block (grows with the blocks run),
kept apart so that an 8-block trial and a country are both sensible."""

from __future__ import annotations

from mapper.estimate.figure import Figure
from mapper.estimate.throughputs import MachineClass

EXECUTOR_NAMES = {"ray": "local Ray", "in_process": "in-process"}
NO_GPU = "run python -m benchmarks.gpu_seg --record on the GPU machine"


def block_seconds(machine: MachineClass, n_sources: int) -> float:
    """Seconds a block with `n_sources` sources: the recorded runs had two, and the stages done once per source
    (fetch, IQA, segmentation) scale with their number."""
    slope, _ = machine.slope()
    share = machine.stage_seconds.per_source_share
    return slope * ((1 - share) + share * n_sources / 2)


def compute_figures(
    name: str,
    machine: MachineClass,
    blocks: int,
    region_blocks: int,
    n_sources: int,
    gpus: int = 0,
    executor: str = "ray",
) -> list[Figure]:
    """Time on one machine of the class, its CPU core-hours, and GPU hours (none recorded yet)."""
    fixed, fixed_basis = machine.fixed_seconds(executor)
    planning = region_blocks * machine.planning_s_per_region_block
    per_block = block_seconds(machine, n_sources)
    _, slope_basis = machine.slope()
    where = f"one {name} machine ({machine.description})"
    if gpus:
        return _with_gpus(machine, fixed + planning, blocks * per_block, where)
    wall = fixed + planning + blocks * per_block
    basis = (
        f"on {where}: {fixed:.0f} s fixed ({EXECUTOR_NAMES[executor]} start-up, models, outputs; {fixed_basis}) "
        f"+ {planning:.1f} s planning {region_blocks:,} blocks + {per_block:.1f} s a block × {blocks:,} (the "
        f"slope of {slope_basis})"
    )
    return [
        Figure("time", "time", wall, "s", basis),
        Figure(
            "cpu_hours",
            "CPU hours",
            wall * machine.cores / 3600,
            "core-hours",
            f"the time above × the machine's {machine.cores} cores, every core counted busy (an upper bound)",
        ),
        Figure("gpu_hours", "GPU hours", 0.0, "GPU-hours", "CPU only (--gpus 0)"),
    ]


def _with_gpus(machine: MachineClass, fixed: float, work: float, where: str) -> list[Figure]:
    """With GPUs the models leave the CPUs; how fast a GPU runs them has not been measured, so neither the time
    nor the GPU hours are estimated, only the CPU's share."""
    stages = machine.stage_seconds
    cpu = (fixed + work * (1 - stages.model_share)) * machine.cores / 3600
    return [
        Figure("time", "time", None, "s", f"needs a recorded GPU throughput ({NO_GPU})"),
        Figure(
            "cpu_hours",
            "CPU hours",
            cpu,
            "core-hours",
            f"the fixed part and the stages no model runs ({1 - stages.model_share:.0%} of a block's time: "
            f"{stages.basis}) on {where}, × {machine.cores} cores",
        ),
        Figure("gpu_hours", "GPU hours", None, "GPU-hours", f"({NO_GPU})", missing="no recorded GPU throughput"),
    ]
