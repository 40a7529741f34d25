"""Group bookkeeping shared by the estimators and the report: labels -> contiguous ids, blocks of equal size.

No verl import: this serves any framework that hands over a flat batch plus one group label per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch

GroupIds = np.ndarray | torch.Tensor | Sequence[Any]


def group_index(group_ids: GroupIds, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Map arbitrary group labels to contiguous ids.

    Args:
        group_ids: (N,) labels: verl's numpy object array of uuid strings, any numpy array, a list, or a tensor.
        device: where the returned tensors live (default: the tensor's own device, else CPU).

    Returns:
        inverse: (N,) int64, the id in 0..G-1 of each sample's group; ids follow the sorted order of the labels.
        counts: (G,) int64, the number of samples in each group.
    """
    if isinstance(group_ids, torch.Tensor):
        flat = _checked_tensor(group_ids)
        _, inverse, counts = torch.unique(flat, sorted=True, return_inverse=True, return_counts=True)
        target = flat.device if device is None else torch.device(device)
        return inverse.to(target), counts.to(target)

    inverse = _factorize(label_array(group_ids), sort=True)
    counts = np.bincount(inverse)
    target = torch.device("cpu") if device is None else torch.device(device)
    return torch.from_numpy(inverse).to(target), torch.from_numpy(counts.astype(np.int64)).to(target)


_LABEL_KINDS = "iuUS"  # numpy dtype kinds accepted as group labels: integers, str, bytes (object: checked apart)


def label_array(group_ids: GroupIds) -> np.ndarray:
    """(N,) numpy array of the labels, or ValueError for a shape or label type that cannot be a group id.

    One kind of label per batch: a mix (b"a" and "a", 1 and "1", 1 and 1.0) is refused rather than merged or
    kept apart by a rule nobody expects; floats are refused because 0.1 + 0.2 style rounding would split groups.
    """
    if isinstance(group_ids, (list, tuple)):
        # Checked before np.asarray, which would turn [b"a", "a"] into ["a", "a"] and [1, "1"] into ["1", "1"].
        kind = _check_label_types(list(group_ids))
        if kind == "int":
            arr = np.asarray(group_ids)  # a plain integer array (fast unique), same groups
        else:
            # Strings and bytes stay Python objects, compared exactly: a fixed-width numpy string array drops
            # trailing NULs, which would merge "a" and "a\x00".
            arr = np.empty(len(group_ids), dtype=object)
            arr[:] = group_ids
    elif isinstance(group_ids, np.ndarray):
        arr = group_ids
    else:
        raise ValueError(
            f"group ids must be a 1-D numpy array, list or tensor of labels, got {type(group_ids).__name__}"
        )
    if arr.ndim != 1:
        raise ValueError(f"group ids must be 1-D (one label per sample), got shape {tuple(arr.shape)}")
    if arr.dtype != object and arr.dtype.kind not in _LABEL_KINDS:
        raise ValueError(f"group ids must be integers or strings, got numpy dtype {arr.dtype}")
    return arr


def _check_label_types(labels: list[Any]) -> str | None:
    """The one kind of label ("str", "bytes" or "int"; None for no labels), or ValueError for a mix or another type."""
    kinds = {}
    for t in set(map(type, labels)):  # a set of types: cheap next to the factorization
        if issubclass(t, str):
            kinds["str"] = t
        elif issubclass(t, bytes):
            kinds["bytes"] = t
        elif issubclass(t, Integral) and not issubclass(t, (bool, np.bool_)):
            kinds["int"] = t
        else:
            raise ValueError(f"group ids must be integers or strings, got a label of type {t.__name__}")
    if len(kinds) > 1:
        raise ValueError(
            f"group ids mix label types ({', '.join(sorted(kinds))}): use one kind for the whole batch, "
            "so that labels such as 1 and '1' are neither merged nor split by accident"
        )
    return next(iter(kinds), None)


def _checked_tensor(group_ids: torch.Tensor) -> torch.Tensor:
    if group_ids.ndim != 1:
        raise ValueError(f"group ids must be 1-D (one label per sample), got shape {tuple(group_ids.shape)}")
    if group_ids.is_floating_point() or group_ids.is_complex() or group_ids.dtype == torch.bool:
        raise ValueError(f"group ids must be integers or strings, got a {group_ids.dtype} tensor")
    return group_ids


def _factorize(arr: np.ndarray, sort: bool) -> np.ndarray:
    """(N,) int64 codes of the labels: in sorted-label order if `sort`, else in order of first appearance
    (object arrays only; other dtypes are always sorted)."""
    return _codes(arr, sort)[0]


def _codes(arr: np.ndarray, sort: bool) -> tuple[np.ndarray, bool | None]:
    """`_factorize`'s codes, and True when they are known to be non-decreasing (every group one contiguous run;
    None: not known).

    verl's uuid strings arrive as an object array; pandas' hash-based factorize hashes them instead of sorting them
    as numpy's unique does (docs/bench.md has the measured difference; pandas is imported here, not at module
    level, to keep `import verl` light).
    """
    if arr.dtype != object:
        return np.unique(arr, return_inverse=True)[1].reshape(-1).astype(np.int64), None
    labels = arr.tolist()
    _check_label_types(labels)
    if not sort:
        return _first_appearance_codes(arr, labels)
    import pandas as pd

    try:
        return np.asarray(pd.factorize(arr, sort=True, use_na_sentinel=False)[0], dtype=np.int64), None
    except TypeError:  # one kind of label is always orderable; kept as the message for a new label type
        raise ValueError("group ids must be orderable labels (str, bytes or integers)") from None


def _first_appearance_codes(arr: np.ndarray, labels: list[Any]) -> tuple[np.ndarray, bool | None]:
    """Codes in order of first appearance of an object array of labels of one kind (`labels` = arr.tolist()),
    and True when every group is one contiguous run.

    verl's batch holds each uid's rollout.n samples side by side: when every run of equal labels is a different
    label, the codes are the run number, found by one vectorized comparison of neighbours; otherwise a dict of
    the labels, one pass with no sort (faster than pandas on uuid strings: docs/bench.md).
    """
    new_run = np.empty(arr.size, dtype=bool)
    new_run[:1] = True
    np.not_equal(arr[1:], arr[:-1], out=new_run[1:])
    run_labels = arr[new_run].tolist()
    if len(set(run_labels)) == len(run_labels):
        return np.cumsum(new_run, dtype=np.int64) - 1, True
    seen: dict[Any, int] = {}
    codes = np.fromiter((seen.setdefault(x, len(seen)) for x in labels), dtype=np.int64, count=arr.size)
    return codes, False


def group_layout(
    group_ids: GroupIds, device: torch.device | str | None = None, sort: bool = True
) -> tuple[np.ndarray, list[tuple[int, np.ndarray, torch.Tensor | None]]]:
    """Everything the estimators need about the groups, with the bookkeeping done on the host.

    The group sizes live on the host (numpy) so that checking them and splitting the batch by size needs no
    device round trip per size; for label arrays (verl's uuid strings) the whole factorization stays in numpy
    and only the (N,) permutation travels to the device, once.

    Args:
        group_ids: (N,) labels, as for `group_index` (N >= 1).
        device: where the member indices live (default: the tensor's own device, else CPU).
        sort: number groups in sorted-label order (needed only when the caller reports per-group values).

    Returns:
        counts: (G,) int64 numpy array, the size of each group.
        blocks: one (n, groups, members) per distinct size n: groups (G_n,) numpy ids, members (G_n, n)
            int64 tensor of sample positions, row g listing the samples of groups[g]; members is None when the
            batch is already laid out as G contiguous groups of n (then row g is samples g*n .. g*n+n-1).
    """
    if isinstance(group_ids, torch.Tensor):
        inverse, counts_t = group_index(group_ids, device=device)
        counts = counts_t.cpu().numpy()
        order = torch.argsort(inverse, stable=True)
        target = inverse.device
    else:
        inverse_np, contiguous = _codes(label_array(group_ids), sort)
        counts = np.bincount(inverse_np)
        if contiguous is None:
            contiguous = bool((inverse_np[1:] >= inverse_np[:-1]).all())
        if contiguous and (counts == counts[0]).all():
            return counts, [(int(counts[0]), np.arange(counts.size), None)]  # contiguous blocks: no gather needed
        target = torch.device("cpu") if device is None else torch.device(device)
        order = torch.from_numpy(np.argsort(inverse_np, kind="stable")).to(target)
    return counts, _blocks(order, counts, target)


def _blocks(
    order: torch.Tensor, counts: np.ndarray, device: torch.device
) -> list[tuple[int, np.ndarray, torch.Tensor | None]]:
    lo, hi = int(counts.min()), int(counts.max())
    if lo == hi:  # the usual case (every prompt sampled rollout.n times): one block, a plain reshape
        return [(lo, np.arange(counts.size), order.view(counts.size, lo))]
    starts = np.cumsum(counts) - counts
    blocks = []
    for n in np.unique(counts).tolist():
        groups = np.flatnonzero(counts == n)
        positions = torch.from_numpy((starts[groups][:, None] + np.arange(n)).reshape(-1)).to(device)
        blocks.append((n, groups, order.index_select(0, positions).view(len(groups), n)))
    return blocks
