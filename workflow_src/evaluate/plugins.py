"""Plug-in methods: a user's intervention-selection method in one Python file, run like a built-in baseline.

A plug-in file defines ``act(settings, view, key) -> (variable, value)``: jittable, ``view`` a
``rollout.StepView`` (the padded SCM's ranges and masks, the buffer of samples so far, the surrogate's fit,
the step), ``key`` a PRNG key of the method's own stream, ``variable`` an integer scalar (the index of an
intervenable variable) and ``value`` a float scalar in its range. Optionally ``NAME`` (the default method
name) and ``SETTINGS`` (a dict of Python values, passed as ``settings``; the config may override its keys).

Before a plug-in's table is written it is checked, and a broken one is refused with one line naming the
file and the problem (it cannot be imported, has no ``act``, returns the wrong shape or dtype, cannot be
traced by ``jit``, calls back into Python (``act_trace``), or chooses a variable that cannot be intervened on
or a value outside the range), and nothing is written.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..core.buffer import fit_surrogate, initial_buffer
from ..core.problem import problem_of
from ..core.scm import bucket_size, stack_scms, term_bucket
from ..errors import PluginError
from ..provenance import plugin_source_hash
from ..suites.suite_io import Suite
from .act_trace import CallbackError, call_traced, trace_apart
from .methods import Method
from .registry import POLICY_PREFIX, is_policy
from .rollout import StepView, chunk_size

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RANGE_TOLERANCE = 1e-5  # share of a range's width by which a value may overshoot (float32 rounding)


@dataclass(frozen=True)
class Plugin:
    name: str
    path: Path
    file_hash: str  # of the file and what it reads from its folder (provenance.plugin_source_hash)
    settings: dict
    act: Callable  # the file's act(settings, view, key)

    def method(self) -> Method:
        """The plug-in as a ``Method``; a variable that cannot be intervened on or a value outside its range
        comes out as a NaN value, which ``check_records`` turns into a ``PluginError``."""

        def act(_params, view: StepView, key):
            variable, value = self.act(self.settings, view, key)
            n_vars = view.scm.lo.shape[0]
            inside = (variable >= 0) & (variable < n_vars)
            variable = jnp.clip(variable, 0, n_vars - 1)
            lo, hi = view.scm.lo[variable], view.scm.hi[variable]
            ok = inside & view.scm.intervenable[variable] & in_range(lo, hi, value)
            return variable, jnp.where(ok, value, jnp.nan)

        return Method(self.name, act)


def in_range(lo, hi, value, xp=jnp):
    """Whether ``value`` lies in ``[lo, hi]``, up to ``RANGE_TOLERANCE`` of the width; traced (``xp=jnp``, the
    check inside the run) or on the host (``xp=np``, ``check_act``'s)."""
    slack = RANGE_TOLERANCE * (hi - lo)
    return xp.isfinite(value) & (value >= lo - slack) & (value <= hi + slack)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_name(name: str, where: str, reserved=()) -> None:
    if not NAME_PATTERN.match(name) or is_policy(name):
        raise PluginError(f"{where}: method name {name!r} must be letters, digits and _ (not {POLICY_PREFIX}...)")
    if name in reserved:
        raise PluginError(f"{where}: method name {name!r} is a built-in baseline")


def load_plugin(path: str | Path, name: str | None = None, settings: dict | None = None,
                reserved=()) -> Plugin:
    """Import a plug-in file; ``name`` defaults to its ``NAME``, then to the file's stem."""
    path = Path(path)
    try:
        source_hash = plugin_source_hash(path)
    except OSError as exc:
        raise PluginError(f"{exc.filename or path}: cannot read the plug-in file: {exc.strerror}") from None
    folder = str(path.parent.resolve())
    if folder not in sys.path:  # its helper modules beside it are importable, as for a script run from there
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"acbo_plugin_{source_hash}", path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # a plug-in's import may raise anything, SystemExit included
        sys.modules.pop(spec.name, None)
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C while it imports: the command is interrupted (130)
            raise
        raise PluginError(f"{path}: cannot import the plug-in: {_first_line(exc)}") from None
    act = getattr(module, "act", None)
    if not callable(act):
        raise PluginError(f"{path}: defines no act(settings, view, key) function")
    name = name or getattr(module, "NAME", None) or path.stem
    if not isinstance(name, str):
        raise PluginError(f"{path}: NAME must be a string, got {name!r:.60}")
    check_name(name, str(path), reserved)
    defaults = getattr(module, "SETTINGS", {})
    if not isinstance(defaults, dict):
        raise PluginError(f"{path}: SETTINGS must be a dict, got {type(defaults).__name__}")
    unknown = sorted(set(settings or {}) - set(defaults))
    if unknown:
        raise PluginError(f"{path}: settings: unknown key {', '.join(map(repr, unknown))} "
                          f"(the file's SETTINGS: {', '.join(map(repr, defaults)) or 'none'})")
    return Plugin(name, path, source_hash, {**defaults, **(settings or {})}, act)


def probe_views(suite: Suite, protocol: dict) -> StepView:
    """The first step's views of (up to a chunk of) the suite's SCMs, stacked: what ``check_act`` runs on."""
    scms = list(suite.scms)
    bucket = bucket_size(max(s.n for s in scms))
    arrays = stack_scms(scms[:chunk_size(bucket)], bucket, term_bucket(scms))
    n_rows = protocol["n_obs"] + protocol["interventions"]

    def view(scm, key):
        buffer = initial_buffer(scm, key, protocol["n_obs"], n_rows)
        return StepView(problem_of(scm), buffer, fit_surrogate(scm, buffer), jnp.int32(0))

    keys = jax.random.split(jax.random.PRNGKey(protocol["seed"]), arrays.lo.shape[0])
    return jax.jit(jax.vmap(view))(arrays, keys)


def _describe(out) -> str:
    if isinstance(out, tuple | list):
        return f"a {len(out)}-tuple ({', '.join(_describe(x) for x in out)})"
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    return f"{dtype}{list(shape)}" if shape is not None else type(out).__name__


def check_act(plugin: Plugin, suite: Suite, protocol: dict) -> None:
    """Trace ``act`` under ``jit`` and run it on the first step of the suite's SCMs; raise ``PluginError``."""
    views = probe_views(suite, protocol)
    keys = jax.random.split(jax.random.PRNGKey(0), views.scm.lo.shape[0])
    act = jax.vmap(lambda view, key: plugin.act(plugin.settings, view, key))
    try:  # traced in a thread where no frame holds the suite (``act_trace``)
        traced = trace_apart(act, views, keys)
    except CallbackError as exc:
        raise PluginError(f"{plugin.path}: act is refused: {exc}") from None
    except Exception as exc:  # whatever tracing raises: a Python branch on a traced value, a bad index, ...
        raise PluginError(f"{plugin.path}: act is not jittable: {_first_line(exc)}") from None
    shapes = traced.out_shapes
    expected = "(variable: an integer scalar, value: a float scalar)"
    if not (isinstance(shapes, tuple | list) and len(shapes) == 2):
        raise PluginError(f"{plugin.path}: act must return {expected}, got {_describe(shapes)}")
    variable, value = (jax.ShapeDtypeStruct(s.shape[1:], s.dtype) for s in shapes)  # without the vmap axis
    if variable.shape != () or value.shape != () or not jnp.issubdtype(variable.dtype, jnp.integer) or (
            not jnp.issubdtype(value.dtype, jnp.floating)):
        raise PluginError(f"{plugin.path}: act must return {expected}, got {_describe((variable, value))}")
    chosen, values = (np.asarray(x) for x in jax.jit(partial(call_traced, traced))(views, keys))
    lo, hi = np.asarray(views.scm.lo), np.asarray(views.scm.hi)
    allowed = np.asarray(views.scm.intervenable)
    for k, (v, x) in enumerate(zip(chosen.tolist(), values.tolist())):
        scm = suite.scms[k]
        if not (0 <= v < scm.n and allowed[k, v]):
            node = scm.nodes[v] if 0 <= v < scm.n else f"index {v}"
            raise PluginError(f"{plugin.path}: act chose variable {node} on SCM {scm.id}, which cannot be "
                              "intervened on (the target, or a variable without a range)")
        if not in_range(lo[k, v], hi[k, v], x, np):
            raise PluginError(f"{plugin.path}: act chose do({scm.nodes[v]} = {x:g}) on SCM {scm.id}, "
                              f"outside the range [{lo[k, v]:g}, {hi[k, v]:g}]")


def check_records(plugin: Plugin, suite: Suite):
    """A check of the run's records (see ``Plugin.method``): names the first step that left the rules."""

    def check(records: list[dict]) -> None:
        bad = np.argwhere(np.isnan(records[0]["value"]))
        if len(bad):
            k, e, t = bad[0]
            raise PluginError(
                f"{plugin.path}: act chose a variable that cannot be intervened on or a value outside its range "
                f"on SCM {suite.scms[k].id} (episode {e}, step {t})")

    return check
