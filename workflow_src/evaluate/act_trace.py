"""A method's ``act`` traced apart from the truth: the information boundary against walking the call stack.

A method's Python runs once, when its program is traced (``jax.make_jaxpr``). It is traced here, in a thread of
its own, against the shapes and dtypes of its arguments alone: no frame on that thread's stack holds an SCM,
a suite, the oracle's answer or a tracer of them, so a method that walks ``sys._getframe()`` or
``inspect.stack()`` finds its own arguments and nothing else. The traced program (a jaxpr) is then evaluated
inside the protocol's program (``rollout``), where only the view's values flow into it.

A method's program may not call back into Python (``jax.pure_callback``, ``io_callback``, ``jax.debug.callback``
or ``jax.debug.print``): a callback runs while the protocol's program runs, beside the truth. Such a method is
refused (``CallbackError``) before it runs.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import jax
import numpy as np

# the primitives that call back into Python: every ``*callback``, and ``debug_print`` (numpy's formatters)
CALLBACK_WORD = "callback"
DEBUG_PRINT = "debug_print"


class CallbackError(ValueError):
    """A method whose traced program calls back into Python."""


class TracedAct(NamedTuple):
    jaxpr: object  # the ClosedJaxpr of ``act(*args)``
    out_shapes: object  # the pytree of its outputs' ``ShapeDtypeStruct``s


def _abstract(x):
    aval = jax.typeof(x)
    return jax.ShapeDtypeStruct(np.shape(x), aval.dtype, weak_type=aval.weak_type)


def trace_apart(act, *args) -> TracedAct:
    """``act(*args)`` traced in a fresh thread at the shapes of ``args``; re-raises what tracing raises."""
    shapes = jax.tree.map(_abstract, args)
    outcome = {}

    def trace():
        try:
            outcome["traced"] = TracedAct(*jax.make_jaxpr(act, return_shape=True)(*shapes))
        except BaseException as exc:  # handed to the caller's thread, which raises it
            outcome["error"] = exc

    worker = threading.Thread(target=trace, name="method trace", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    traced = outcome["traced"]
    called = sorted(_callbacks(traced.jaxpr.jaxpr))
    if called:
        raise CallbackError(f"its program calls back into Python ({', '.join(called)}), which a method may not: "
                            "remove jax.pure_callback, io_callback and jax.debug.callback/print")
    return traced


def call_traced(traced: TracedAct, *args):
    """The outputs of the traced ``act`` on ``args`` (values or tracers of the shapes it was traced at)."""
    closed = traced.jaxpr
    out = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *jax.tree.leaves(args))
    return jax.tree.unflatten(jax.tree.structure(traced.out_shapes), out)


def call_apart(act, *args):
    """``act(*args)``, its Python run in ``trace_apart``'s thread and its program evaluated here."""
    return call_traced(trace_apart(act, *args), *args)


def _callbacks(jaxpr) -> set[str]:
    """Names of the callback primitives in ``jaxpr`` and the programs nested in it (branches, loops, calls)."""
    found = set()
    for eqn in jaxpr.eqns:
        if CALLBACK_WORD in eqn.primitive.name or eqn.primitive.name == DEBUG_PRINT:
            found.add(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(inner, "eqns"):
                    found |= _callbacks(inner)
    return found
