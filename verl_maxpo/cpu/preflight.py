"""`python -m verl_maxpo.cpu.preflight`: can verl's trainer run on this CPU? Exit 0, or one message and exit 1.

Checks, cheapest first: verl's version (the backend relies on 0.9.x interfaces), torch's gloo backend, that
`import verl` registers the CPU platform and the hf_cpu rollout (the `verl.plugins` entry point found this package),
and that the Ray resources the recipe asks for can hold verl's bundles (otherwise verl waits forever). With
--assets DIR it also checks that DIR holds `verl-maxpo tiny-assets` (or `smol-assets`) output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from verl_maxpo.cpu.resources import fit_message, needed
from verl_maxpo.runs import command
from verl_maxpo.runs.args import int_at_least


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verl_maxpo.cpu.preflight", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--num-cpus", type=int_at_least(1, 4096), default=6, help="ray_kwargs.ray_init.num_cpus of the run, 1..4096"
    )
    p.add_argument(
        "--num-gpus", type=int_at_least(0, 1024), default=1, help="ray_kwargs.ray_init.num_gpus (fake slots), 0..1024"
    )
    p.add_argument(
        "--workers", type=int_at_least(1, 1024), default=1, help="trainer.n_gpus_per_node * trainer.nnodes, 1..1024"
    )
    p.add_argument("--assets", help="a `verl-maxpo tiny-assets` or `smol-assets` folder to check")
    return p


def problems(args: argparse.Namespace) -> list[str]:
    import torch
    import verl
    from packaging.version import Version

    found = []
    if not Version("0.9") <= Version(verl.__version__) < Version("0.10"):
        found.append(f"verl {verl.__version__} is installed; the CPU backend is written against verl 0.9.x")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        found.append("this torch build has no gloo backend (needed for FSDP on a CPU)")
    from importlib.metadata import entry_points

    plugins = {ep.value for ep in entry_points(group="verl.plugins")}
    if "verl_maxpo.plugin" not in plugins:
        found.append(
            "verl will not load verl-maxpo's plugin: no `verl.plugins` entry point names verl_maxpo.plugin "
            "(install verl-maxpo, e.g. `pip install -e .`)"
        )
    else:
        from verl.plugin.platform import PlatformRegistry
        from verl.workers.rollout.base import _ROLLOUT_REGISTRY

        from verl_maxpo.cpu import register

        register()  # what the entry point runs in every verl process (idempotent)
        if PlatformRegistry.get("cpu") is None or ("hf_cpu", "async") not in _ROLLOUT_REGISTRY:
            found.append("verl-maxpo's plugin ran but verl's registries lack the 'cpu' platform / 'hf_cpu' rollout")
    need_cpus, need_gpus = needed(args.workers)
    message = fit_message(args.num_cpus, args.num_gpus, need_cpus, need_gpus)
    if message:
        found.append(message)
    assets = None if args.assets is None else Path(args.assets).expanduser()
    if args.assets is not None and not args.assets.strip():
        found.append("--assets is empty; give the folder `verl-maxpo tiny-assets --out` or `smol-assets --out` wrote")
    elif assets is not None and _is_smol(assets):
        from verl_maxpo.tasks.smol.assets import validate_assets as validate_smol

        if (damage := validate_smol(assets)) is not None:
            found.append(
                f"{args.assets} holds damaged smol assets ({damage}): "
                f"run `verl-maxpo smol-assets --out {args.assets} --force`"
            )
    elif assets is not None:
        from verl_maxpo.tasks.tiny.assets import existing_manifest, validate_assets

        if existing_manifest(assets) is None:
            found.append(f"{args.assets} holds no tiny assets: run `verl-maxpo tiny-assets --out {args.assets}`")
        elif (damage := validate_assets(assets)) is not None:
            found.append(
                f"{args.assets} holds damaged tiny assets ({damage}): "
                f"run `verl-maxpo tiny-assets --out {args.assets} --force`"
            )
    return found


def _is_smol(folder: Path) -> bool:
    from verl_maxpo.runs.outputs import owned_files

    return bool(owned_files(folder, "smol-assets"))


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m verl_maxpo.cpu.preflight` (runs/command.py owns the exit status)."""
    return command.run("preflight", _main, argv, prog="preflight")


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    found = problems(args)
    for problem in found:
        print(f"preflight: {problem}", file=sys.stderr)
    if not found:
        print("preflight: ok (verl's trainer can run on this CPU with VERL_PLATFORM=cpu)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
