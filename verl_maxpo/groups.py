"""Group bookkeeping shared by the estimators and the report: labels -> contiguous ids, size classes.

No verl import: this serves any framework that hands over a flat batch plus one group label per sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
        flat = group_ids.reshape(-1)
        if flat.is_floating_point() or flat.is_complex():
            raise ValueError("group ids must be integers or strings, got a floating-point tensor")
        _, inverse, counts = torch.unique(flat, sorted=True, return_inverse=True, return_counts=True)
        target = flat.device if device is None else torch.device(device)
        return inverse.to(target), counts.to(target)

    arr = np.asarray(group_ids)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind == "f":
        raise ValueError("group ids must be integers or strings, got floating-point numbers")
    inverse = _factorize(arr)
    counts = np.bincount(inverse)
    target = torch.device("cpu") if device is None else torch.device(device)
    return torch.from_numpy(inverse).to(target), torch.from_numpy(counts.astype(np.int64)).to(target)


def _factorize(arr: np.ndarray) -> np.ndarray:
    """(N,) int64 codes of the labels in sorted-label order.

    verl's uuid strings arrive as an object array; pandas' hash-based factorize is about 5x faster on them than
    numpy's sort-based unique (pandas is imported here, not at module level, to keep `import verl` light).
    """
    if arr.dtype == object:
        import pandas as pd

        try:
            # use_na_sentinel=False: a None label is a group of its own, never code -1.
            return np.asarray(pd.factorize(arr, sort=True, use_na_sentinel=False)[0], dtype=np.int64)
        except TypeError:  # an unorderable mix of label types: compare their text instead
            arr = np.array([repr(x) for x in arr.tolist()])
    return np.unique(arr, return_inverse=True)[1].reshape(-1).astype(np.int64)


def size_classes(inverse: torch.Tensor, counts: torch.Tensor) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield the groups of each distinct size as one dense block, so each size is handled without per-group loops.

    Args:
        inverse: (N,) group id of each sample, as returned by `group_index`.
        counts: (G,) samples per group.

    Yields:
        n: the group size of this block.
        groups: (G_n,) ids of the groups of size n.
        members: (G_n, n) sample positions of those groups, row g listing the samples of groups[g].
    """
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    for n in torch.unique(counts).tolist():
        groups = torch.nonzero(counts == n).squeeze(1)
        offsets = torch.arange(n, device=inverse.device)
        positions = starts.index_select(0, groups).unsqueeze(1) + offsets
        yield int(n), groups, order.index_select(0, positions.reshape(-1)).view(len(groups), int(n))
