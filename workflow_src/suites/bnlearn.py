"""The four Gaussian Bayesian networks of the bnlearn repository that ``pgmpy`` (>= 1.0) ships in its wheel, as
the fixed suites ``heldout-bnlearn`` (linear, acbo-suite/1) and ``heldout-bnlearn-head`` (a nonlinear head on the
target, acbo-suite/2).

The networks are linear-Gaussian models fitted to real data (``ecoli70``: 46 nodes, E. coli expression;
``magic-niab``: 44 and ``magic-irri``: 64, wheat and rice MAGIC populations; ``arth150``: 107, A. thaliana
expression). Each is read from the installed package's data file ``pgmpy/utils/example_models/{name}.json``
(nodes, arcs, and per node an intercept, its parents' coefficients and a residual variance), located without
importing pgmpy; nothing of them is copied into this repository. pgmpy is an optional extra
(``pip install 'acbo-workflow[bnlearn]'``): it pulls in scikit-learn, statsmodels and huggingface_hub, far more
than four small JSON files are worth as a runtime dependency of every job.

Benchmark problem per network (documented choices):

- **target**: the sink with the most ancestors (ties: the first in file order), as for the generated suites;
- **intervenable**: the target's ancestors, each within **two observational standard deviations of its
  observational mean** (closed form: ``mu = T^T b``, ``Var = T^T diag(s^2) T``), rounded to ``DECIMALS``;
  the other nodes are observed only;
- the bnlearn parameters as they are (intercepts, coefficients, residual standard deviations ``sqrt(variance)``).

The head variant replaces the target's linear equation by a random cosine sum of each parent (``HEAD_FEATURES``
random Fourier features, lengthscale a quarter of the parent's range, i.e. one observational standard
deviation, amplitude the linear term's swing ``|w| * 2 sd``), drawn from a fixed seed per network and redrawn
until it passes the nonlinear families' keep rule (``nonlinear.keep_problem``).
"""

from __future__ import annotations

import json
import zlib
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from ..core.graph import ancestors
from ..core.scm import SCM, total_effects
from ..errors import SuiteError
from .generators import _pick_target
from .nonlinear import NonlinearSettings, _cosines, _Terms, keep
from .suite_io import SUITE_FORMAT, SUITE_FORMAT_V2, Suite

NETWORKS = ("ecoli70", "magic-niab", "magic-irri", "arth150")
DATA_DIR = "utils/example_models"  # inside the installed pgmpy package
MIN_VERSION = (1, 0)
RANGE_SDS = 2.0
DECIMALS = 4
HEAD_FEATURES = 3
HEAD_DRAWS = 200
INSTALL_HINT = "pip install 'acbo-workflow[bnlearn]' (or pgmpy>=1.0)"


def pgmpy_data_dir() -> Path | None:
    """The installed pgmpy's folder of example model files, or None when pgmpy (>= 1.0) is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        spec = find_spec("pgmpy")
        release = tuple(int(p) for p in version("pgmpy").split(".")[:2] if p.isdigit())
    except (ImportError, ValueError, PackageNotFoundError):
        return None
    if spec is None or not spec.submodule_search_locations or release < MIN_VERSION:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / DATA_DIR
    return folder if all((folder / f"{name}.json").is_file() for name in NETWORKS) else None


def require_data_dir(suite: str) -> Path:
    folder = pgmpy_data_dir()
    if folder is None:
        raise SuiteError(suite, [f"needs the Gaussian networks shipped by pgmpy>=1.0, which is not installed: "
                                 f"{INSTALL_HINT}"])
    return folder


def network_scm(path: Path, scm_id: str, family: str = "bnlearn") -> SCM:
    """One network as a linear SCM with the documented target and ranges."""
    doc = json.loads(path.read_text())
    nodes = tuple(doc["nodes"])
    index = {name: i for i, name in enumerate(nodes)}
    n = len(nodes)
    weights, bias, noise = np.zeros((n, n)), np.zeros(n), np.zeros(n)
    for name, cpd in doc["cpds"].items():
        j = index[name]
        for parent, (coef,) in cpd["coefficients"].items():
            if parent == "(Intercept)":
                bias[j] = coef
            else:
                weights[index[parent], j] = coef
        noise[j] = float(np.sqrt(cpd["variance"][0]))
    target = _pick_target(weights, None, "most_ancestors")
    effects = total_effects(weights)
    mean = effects.T @ bias
    sd = np.sqrt((effects**2).T @ noise**2)
    allowed = ancestors(weights, target)
    lo = np.where(allowed, np.round(mean - RANGE_SDS * sd, DECIMALS), np.nan)
    hi = np.where(allowed, np.round(mean + RANGE_SDS * sd, DECIMALS), np.nan)
    return SCM(id=scm_id, nodes=nodes, target=int(target), weights=weights, bias=bias, noise_std=noise, lo=lo, hi=hi,
               family=family, level=0)


def with_head(scm: SCM, seed: int) -> SCM:
    """``scm`` with the target's linear equation replaced by a random cosine sum of each parent (see the module's
    docstring), redrawn from ``seed`` until it passes the keep rule."""
    rng = np.random.default_rng(seed)
    ns = NonlinearSettings()
    parents = np.flatnonzero(scm.weights[:, scm.target])
    weights = scm.weights.copy()
    weights[:, scm.target] = 0.0
    for _ in range(HEAD_DRAWS):
        terms = _Terms(DECIMALS)
        for p in parents:
            width = scm.hi[p] - scm.lo[p]
            _cosines(terms, int(p), scm.target, abs(scm.weights[p, scm.target]) * width / 2, width / 4,
                     HEAD_FEATURES, rng)
        head = SCM(id=scm.id, nodes=scm.nodes, target=scm.target, weights=weights, bias=scm.bias,
                   noise_std=scm.noise_std, lo=scm.lo, hi=scm.hi, family=f"{scm.family}-head", level=0,
                   terms=terms.build())
        if (kept := keep(head, ns)) is not None:
            return kept
    raise RuntimeError(f"{scm.id}: no nonlinear head passed the keep rule in {HEAD_DRAWS} draws")


def bnlearn_suite(name: str, head: bool = False) -> Suite:
    """The four networks (linear), or with a nonlinear head on each target (``head``)."""
    folder = require_data_dir(name)
    scms = []
    for network in NETWORKS:
        scm = network_scm(folder / f"{network}.json", f"{name}-{network}")
        scms.append(with_head(scm, zlib.crc32(network.encode())) if head else scm)
    return Suite(name=name, scms=tuple(scms), level=None, seed=None, format=SUITE_FORMAT_V2 if head else SUITE_FORMAT)
