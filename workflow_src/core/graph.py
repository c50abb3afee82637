"""Directed graphs as boolean adjacency matrices (``adjacency[i, j]``: edge i -> j): topological order, cycles,
reachability and ancestors, in numpy, linear in the graph's size where a walk suffices."""

from __future__ import annotations

import numpy as np


def _peel(adjacency: np.ndarray) -> list[int]:
    """Kahn's algorithm: nodes in a topological order, as far as one exists (cycles stop it)."""
    children = [np.flatnonzero(row) for row in adjacency]
    indegree = adjacency.sum(axis=0)
    ready = list(np.flatnonzero(indegree == 0)[::-1])
    order = []
    while ready:
        node = ready.pop()
        order.append(int(node))
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return order


def topological_order(adjacency: np.ndarray) -> np.ndarray | None:
    """A topological order of the graph ``adjacency[i, j]`` (edge i -> j), or None when it has a cycle."""
    adjacency = np.asarray(adjacency, bool)
    order = _peel(adjacency)
    return np.asarray(order, int) if len(order) == adjacency.shape[0] else None


def cycle_nodes(adjacency: np.ndarray) -> np.ndarray:
    """Indices of the nodes on a cycle or between cycles (empty for a DAG): what peeling sources and sinks leaves."""
    adjacency = np.asarray(adjacency, bool)
    left = np.ones(adjacency.shape[0], bool)
    left[_peel(adjacency)] = False
    left[_peel(adjacency.T)] = False
    return np.flatnonzero(left)


def reachability(adjacency: np.ndarray) -> np.ndarray:
    """Transitive closure of a DAG: ``out[i, j]`` is True when a directed path of length >= 1 leads i -> j.

    One pass in reverse topological order (each node's row is its children's rows combined), so the cost is
    (edges x nodes) / vector width rather than repeated matrix products.
    """
    adjacency = np.asarray(adjacency, bool)
    order = topological_order(adjacency)
    if order is None:
        raise ValueError("reachability: the graph has a cycle")
    reach = adjacency.copy()
    for node in order[::-1]:
        children = np.flatnonzero(adjacency[node])
        if children.size:
            reach[node] |= reach[children].any(axis=0)
    return reach


def ancestors(weights: np.ndarray, node: int) -> np.ndarray:
    """Boolean mask of the (strict) ancestors of ``node``: a walk up the parents, linear in the graph's size."""
    adjacency = np.asarray(weights) != 0
    mask = np.zeros(adjacency.shape[0], bool)
    stack = [node]
    while stack:
        for parent in np.flatnonzero(adjacency[:, stack.pop()]):
            if not mask[parent]:
                mask[parent] = True
                stack.append(parent)
    return mask
