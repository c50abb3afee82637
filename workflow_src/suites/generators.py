"""Random SCM generators for the 15 curriculum levels and the fixed ``heldout-classic`` suite.

Every suite is drawn from one ``numpy.random.Generator`` seeded by the suite seed, so the same
settings always give byte-identical suite files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config_schema import n_levels, section_defaults
from ..core.graph import reachability
from ..core.scm import FUNCTIONS, SCM, Terms, has_oracle_gap
from .suite_io import SUITE_FORMAT_V2, Suite

if TYPE_CHECKING:  # networkx is imported only where a random graph is drawn: it costs ~0.5 s per job
    import networkx as nx

N_LEVELS = n_levels()


@dataclass(frozen=True)
class LevelSpec:
    families: tuple[str, ...]
    min_nodes: int
    max_nodes: int
    canonical: bool = False  # each family's motif itself (its own node count), not a stack of motifs


LEVELS: dict[int, LevelSpec] = {
    1: LevelSpec(("chain", "fork", "collider"), 3, 3),
    2: LevelSpec(("chain", "fork", "collider"), 4, 5),
    3: LevelSpec(("chain", "fork", "collider"), 6, 8),
    4: LevelSpec(("diamond", "butterfly"), 4, 5, canonical=True),
    5: LevelSpec(("diamond", "butterfly"), 6, 8),
    6: LevelSpec(("diamond", "butterfly"), 9, 12),
    7: LevelSpec(("erdos_renyi",), 8, 10),
    8: LevelSpec(("erdos_renyi",), 11, 15),
    9: LevelSpec(("erdos_renyi",), 16, 20),
    10: LevelSpec(("small_world",), 10, 15),
    11: LevelSpec(("small_world",), 16, 25),
    12: LevelSpec(("small_world",), 26, 35),
    13: LevelSpec(("scale_free",), 15, 20),
    14: LevelSpec(("scale_free",), 21, 35),
    15: LevelSpec(("scale_free",), 36, 50),
}

_DEFAULTS = section_defaults("suites")


@dataclass(frozen=True)
class GeneratorSettings:
    """Parameter distributions of generated SCMs (the config's ``suites`` section; defaults from its schema)."""

    coef_range: tuple[float, float] = tuple(float(x) for x in _DEFAULTS["coef_range"])
    bias_range: tuple[float, float] = tuple(float(x) for x in _DEFAULTS["bias_range"])
    noise_range: tuple[float, float] = tuple(float(x) for x in _DEFAULTS["noise_range"])
    range_choices: tuple[float, ...] = tuple(float(x) for x in _DEFAULTS["range_choices"])
    target: str = _DEFAULTS["target"]  # or "random": any node with at least one intervenable ancestor
    erdos_renyi_degree: float = _DEFAULTS["erdos_renyi_degree"]
    small_world_k: int = _DEFAULTS["small_world_k"]
    small_world_p: float = _DEFAULTS["small_world_p"]
    scale_free_m: int = _DEFAULTS["scale_free_m"]
    decimals: int = 4  # generated numbers are rounded to this many decimals (not a config setting)

    @classmethod
    def from_config(cls, section: dict) -> GeneratorSettings:
        fields = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        for key in ("coef_range", "bias_range", "noise_range", "range_choices"):
            if key in fields:
                fields[key] = tuple(float(x) for x in fields[key])
        return cls(**fields)


# --- graph structures: each returns (n, edges) with nodes 0..n-1 --------------------------------

Edges = list[tuple[int, int]]


def _chain(n: int, rng) -> Edges:
    return [(i, i + 1) for i in range(n - 1)]


def _fork(n: int, rng) -> Edges:
    # one common cause of every other variable
    return [(0, i) for i in range(1, n)]


def _collider(n: int, rng) -> Edges:
    return [(i, n - 1) for i in range(n - 1)]


_DIAMOND = 4, [(0, 1), (0, 2), (1, 3), (2, 3)]
# butterfly: A -> M <- B, A -> X, B -> Y, M -> X, M -> Y, X -> Y (nodes A, B, M, X, Y)
_BUTTERFLY = 5, [(0, 2), (1, 2), (0, 3), (1, 4), (2, 3), (2, 4), (3, 4)]


def _stacked_motif(motif: tuple[int, list], n: int, rng) -> Edges:
    """Stack copies of a motif (each new copy's root is the previous sink), then add extra causes."""
    size, motif_edges = motif
    edges = list(motif_edges)
    sink, count = size - 1, size
    while count + size - 1 <= n:
        # the new copy's node 0 is the previous sink, its other nodes are fresh
        mapping = {0: sink, **{k: count + k - 1 for k in range(1, size)}}
        edges += [(mapping[a], mapping[b]) for a, b in motif_edges]
        sink, count = mapping[size - 1], count + size - 1
    for extra in range(count, n):
        # an extra variable: a new root causing one or two existing non-sink variables
        children = rng.choice(np.arange(extra)[np.arange(extra) != sink], size=min(2, extra - 1), replace=False)
        edges += [(extra, int(c)) for c in children]
    return edges


def _diamond(n: int, rng) -> Edges:
    return _stacked_motif(_DIAMOND, n, rng)


def _butterfly(n: int, rng) -> Edges:
    return _stacked_motif(_BUTTERFLY, n, rng)


def _orient(graph: nx.Graph, order: np.ndarray) -> Edges:
    """Orient an undirected graph into a DAG: every edge points from earlier to later in ``order``."""
    rank = np.empty(len(order), int)
    rank[order] = np.arange(len(order))
    return [(u, v) if rank[u] < rank[v] else (v, u) for u, v in sorted(graph.edges())]


def _seed(rng) -> int:
    return int(rng.integers(2**31 - 1))


def _erdos_renyi(n: int, rng, settings: GeneratorSettings) -> Edges:
    import networkx as nx

    p = min(1.0, settings.erdos_renyi_degree / (n - 1))
    graph = nx.gnp_random_graph(n, p, seed=_seed(rng))
    return _orient(graph, rng.permutation(n))


def _small_world(n: int, rng, settings: GeneratorSettings) -> Edges:
    import networkx as nx

    graph = nx.watts_strogatz_graph(n, min(settings.small_world_k, n - 1), settings.small_world_p, seed=_seed(rng))
    return _orient(graph, rng.permutation(n))


def _scale_free(n: int, rng, settings: GeneratorSettings) -> Edges:
    import networkx as nx

    graph = nx.barabasi_albert_graph(n, min(settings.scale_free_m, n - 1), seed=_seed(rng))
    return _orient(graph, np.arange(n))  # arrival order: older nodes cause newer ones


STRUCTURES: dict[str, Callable] = {
    "chain": lambda n, rng, s: _chain(n, rng),
    "fork": lambda n, rng, s: _fork(n, rng),
    "collider": lambda n, rng, s: _collider(n, rng),
    "diamond": lambda n, rng, s: _diamond(n, rng),
    "butterfly": lambda n, rng, s: _butterfly(n, rng),
    "erdos_renyi": _erdos_renyi,
    "small_world": _small_world,
    "scale_free": _scale_free,
}


def _pick_target(weights: np.ndarray, rng, how: str) -> int | None:
    n_ancestors = reachability(weights != 0).sum(axis=0)
    has_parent = (weights != 0).any(axis=0)
    if not has_parent.any():
        return None
    if how == "random":
        return int(rng.choice(np.flatnonzero(has_parent)))
    sinks = np.flatnonzero(~(weights != 0).any(axis=1) & has_parent)
    candidates = sinks if sinks.size else np.flatnonzero(has_parent)
    return int(candidates[np.argmax(n_ancestors[candidates])])  # first of the ties: deterministic


def _family_nodes(family: str, spec: LevelSpec, rng) -> int:
    if spec.canonical:
        return {"diamond": _DIAMOND[0], "butterfly": _BUTTERFLY[0]}[family]
    return int(rng.integers(spec.min_nodes, spec.max_nodes + 1))


def generate_scm(scm_id: str, level: int, rng, settings: GeneratorSettings, family: str | None = None) -> SCM:
    spec = LEVELS[level]
    family = family or str(rng.choice(spec.families))
    while True:
        n = _family_nodes(family, spec, rng)
        edges = STRUCTURES[family](n, rng, settings)
        weights = np.zeros((n, n))
        lo_c, hi_c = settings.coef_range
        for a, b in edges:
            weights[a, b] = rng.uniform(lo_c, hi_c) * rng.choice((-1.0, 1.0))
        weights = np.round(weights, settings.decimals)
        target = _pick_target(weights, rng, settings.target)
        if target is None:
            continue
        bias = np.round(rng.uniform(*settings.bias_range, size=n), settings.decimals)
        noise = np.round(rng.uniform(*settings.noise_range, size=n), settings.decimals)
        radius = rng.choice(np.asarray(settings.range_choices), size=n)
        allowed = np.arange(n) != target
        scm = SCM(
            id=scm_id,
            nodes=tuple(f"X{i}" for i in range(n)),
            target=target,
            weights=weights,
            bias=bias,
            noise_std=noise,
            lo=np.where(allowed, -radius, np.nan),
            hi=np.where(allowed, radius, np.nan),
            family=family,
            level=level,
        )
        # normalized improvement divides by the oracle gap: keep only SCMs where intervening can help
        if has_oracle_gap(scm.exact()):
            return scm


def generate_level_suite(name: str, level: int, size: int, seed: int, settings: GeneratorSettings) -> Suite:
    """``size`` SCMs of one level; families are balanced (cycled in a seeded random order)."""
    if level not in LEVELS:
        raise ValueError(f"level must be in 1..{N_LEVELS}, got {level}")
    rng = np.random.default_rng(seed)
    families = LEVELS[level].families
    order = [families[i] for i in rng.permutation(len(families))]
    scms = tuple(
        generate_scm(f"{name}-{k:03d}", level, rng, settings, family=order[k % len(order)]) for k in range(size)
    )
    return Suite(name=name, scms=scms, level=level, seed=seed)


def _fixed_scm(scm_id, family, n, edges, target, radius, bias=None, noise=None) -> SCM:
    weights = np.zeros((n, n))
    for a, b, w in edges:
        weights[a, b] = w
    allowed = np.arange(n) != target
    return SCM(
        id=scm_id, nodes=tuple(f"X{i}" for i in range(n)), target=target, weights=weights,
        bias=np.zeros(n) if bias is None else np.asarray(bias, float),
        noise_std=np.ones(n) if noise is None else np.asarray(noise, float),
        lo=np.where(allowed, -radius, np.nan), hi=np.where(allowed, radius, np.nan), family=family, level=0,
    )


def classic_suite(name: str = "heldout-classic") -> Suite:
    """Fixed hand-written SCMs: a 6-node chain (coefficient 1.5), the butterfly, a mixed-sign collider."""
    chain = _fixed_scm(f"{name}-chain6", "chain", 6, [(i, i + 1, 1.5) for i in range(5)], 5, 2.0)
    butterfly = _fixed_scm(
        f"{name}-butterfly", "butterfly", 5,
        [(a, b, w) for (a, b), w in zip(_BUTTERFLY[1], (1.0, 1.0, 0.8, 0.8, 1.2, -1.0, 1.5))], 4, 3.0,
    )
    collider = _fixed_scm(f"{name}-collider3", "collider", 4, [(0, 3, 2.0), (1, 3, -1.5), (2, 3, 0.7)], 3, 5.0)
    return Suite(name=name, scms=(chain, butterfly, collider), level=None, seed=None)


def cbo_toy_scm(scm_id: str = "cbo-toy") -> SCM:
    """The toy graph of the CBO paper (Aglietti et al., 2020): X -> Z -> Y, X = eps, Z = exp(-X) + eps,
    Y = cos(Z) - exp(-Z / 20) + eps, all noise N(0, 1), X in [-5, 5], Z in [-5, 20]. E[Y | do(Z = z)] =
    cos z - exp(-z / 20): its minimum, about -2.172, lies inside the range near z = -3.20."""
    fn = {name: k for k, name in enumerate(FUNCTIONS)}
    terms = Terms(parent=np.array([0, 1, 1]), child=np.array([1, 2, 2]),
                  fn=np.array([fn["exp"], fn["cos"], fn["exp"]]), weight=np.array([1.0, 1.0, -1.0]),
                  scale=np.array([-1.0, 1.0, -0.05]), shift=np.zeros(3))
    return SCM(id=scm_id, nodes=("X", "Z", "Y"), target=2, weights=np.zeros((3, 3)), bias=np.zeros(3),
               noise_std=np.ones(3), lo=np.array([-5.0, -5.0, np.nan]), hi=np.array([5.0, 20.0, np.nan]),
               family="cbo_toy", level=0, terms=terms)


def literature_suite(name: str = "heldout-cbo") -> Suite:
    """Fixed nonlinear SCMs stated exactly in the causal BO literature (acbo-suite/2, oracles attached)."""
    from .oracle import with_oracle

    return Suite(name=name, scms=(with_oracle(cbo_toy_scm(f"{name}-toy")),), level=None, seed=None,
                 format=SUITE_FORMAT_V2)
