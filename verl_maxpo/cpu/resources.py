"""Can Ray place verl's bundles? Checked before verl waits on a placement group that never becomes ready."""

from __future__ import annotations

# verl's ResourcePoolManager uses max_colocate_count=3 (single_controller/ray/base.py ~192): each worker bundle
# asks for 3 logical CPUs and one (fake) GPU. When the bundles are placed, verl's TaskRunner and one helper actor
# already hold 1 logical CPU each (measured with verl 0.9.1 and the tiny recipe).
CPUS_PER_BUNDLE = 3
TASK_RUNNER_CPUS = 2


class PlacementError(RuntimeError):
    """Ray cannot place verl's placement-group bundles: verl would wait forever."""


def needed(num_workers: int) -> tuple[int, int]:
    """(logical CPUs, GPU slots) a CPU run with `num_workers` actor ranks needs from `ray.init`."""
    return CPUS_PER_BUNDLE * num_workers + TASK_RUNNER_CPUS, num_workers


def fit_message(
    have_cpus: float, have_gpus: float, need_cpus: float, need_gpus: float, held: tuple[float, float] = (0, 0)
) -> str | None:
    """None if the free resources (have) cover the request (need), else one line saying what to raise.

    `held` is what other actors already hold (CPUs, GPUs), added to the suggested ray_init totals."""
    problems = []
    if have_gpus < need_gpus:
        problems.append(
            f"Ray offers {have_gpus:g} GPU slot(s) but verl asks for {need_gpus:g}: on a CPU give Ray fake slots "
            f"with +ray_kwargs.ray_init.num_gpus={int(held[1] + need_gpus)} (and trainer.n_gpus_per_node to match)"
        )
    if have_cpus < need_cpus:
        problems.append(
            f"Ray offers {have_cpus:g} logical CPU(s) but verl needs {need_cpus:g}: set "
            f"ray_kwargs.ray_init.num_cpus to at least {int(held[0] + need_cpus)} (logical CPUs, not real cores)"
        )
    return "; ".join(problems) or None


def check_bundles_fit(cpus_per_bundle: int, gpu_per_bundle: int, bundles: int) -> None:
    """Raise PlacementError (instead of hanging) if the running Ray cluster cannot place the bundles now."""
    import ray

    free, total = ray.available_resources(), ray.cluster_resources()
    have = (free.get("CPU", 0.0), free.get("GPU", 0.0))
    held = (total.get("CPU", 0.0) - have[0], total.get("GPU", 0.0) - have[1])
    message = fit_message(*have, cpus_per_bundle * bundles, gpu_per_bundle * bundles, held=held)
    if message:
        raise PlacementError(f"verl-maxpo CPU backend: {message}. verl would otherwise wait forever.")
