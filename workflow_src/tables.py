"""Parquet table schemas: the long evaluation table shared by every method, the training log and the summary."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path
from .errors import TableError

if TYPE_CHECKING:  # pandas is imported by the stages that build or read frames, not by evaluation jobs
    import pandas as pd

# The identity of a row about one SCM of a suite (config, seed and checkpoint hash null for baselines), and the
# provenance of the code and checkpoint that wrote it: shared by the evaluation and response quality tables.
SCM_IDENTITY_FIELDS = [
    pa.field("config", pa.string()),
    pa.field("seed", pa.int32()),
    pa.field("suite", pa.string(), nullable=False),
    pa.field("scm_id", pa.string(), nullable=False),
    pa.field("family", pa.string(), nullable=False),
    pa.field("level", pa.int16(), nullable=False),
]
PROVENANCE_FIELDS = [
    pa.field("package_version", pa.string(), nullable=False),
    pa.field("git_commit", pa.string(), nullable=False),
    pa.field("checkpoint_hash", pa.string()),
]

# One row per (method, SCM, episode, step). Baseline and plug-in rows have null config, seed and checkpoint
# hash; only plug-in rows have a plugin_hash.
EVAL_SCHEMA = pa.schema(
    [
        # identity
        *SCM_IDENTITY_FIELDS,
        pa.field("method", pa.string(), nullable=False),
        pa.field("episode", pa.int32(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        # action
        pa.field("variable", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("is_parent", pa.bool_(), nullable=False),
        pa.field("is_optimal_variable", pa.bool_(), nullable=False),
        pa.field("range_utilization", pa.float64(), nullable=False),  # |value - center| / radius, in [0, 1]
        # outcomes
        pa.field("target", pa.float64(), nullable=False),  # sampled Y of this intervention
        pa.field("expected_target", pa.float64(), nullable=False),  # exact E[Y | do(variable = value)]
        pa.field("oracle_target", pa.float64(), nullable=False),  # y*, the best achievable E[Y]
        pa.field("random_target", pa.float64(), nullable=False),  # E[Y] of the uniformly random policy
        pa.field("mu_target", pa.float64(), nullable=False),  # observational E[Y]
        pa.field("norm_improvement", pa.float64(), nullable=False),  # (mu - expected) / (mu - y*)
        pa.field("f1", pa.float64(), nullable=False),  # surrogate structure F1 on the data collected so far
        # provenance
        *PROVENANCE_FIELDS,
        pa.field("plugin_hash", pa.string()),  # sha256 (16 hex digits) of a plug-in method's file
    ]
)

# One row per training episode.
TRAIN_LOG_SCHEMA = pa.schema(
    [
        pa.field("config", pa.string(), nullable=False),
        pa.field("seed", pa.int32(), nullable=False),
        pa.field("episode", pa.int32(), nullable=False),
        pa.field("level", pa.int16(), nullable=False),
        pa.field("level_changed", pa.bool_(), nullable=False),
        pa.field("scm_ids", pa.string(), nullable=False),  # the update's SCMs, comma-separated; metrics: their mean
        pa.field("families", pa.string(), nullable=False),  # their families, in the same order
        pa.field("reward", pa.float64(), nullable=False),
        pa.field("reward_target", pa.float64(), nullable=False),
        pa.field("reward_parent", pa.float64(), nullable=False),
        pa.field("reward_info_gain", pa.float64(), nullable=False),
        pa.field("norm_improvement", pa.float64(), nullable=False),
        pa.field("parent_rate", pa.float64(), nullable=False),
        pa.field("range_utilization", pa.float64(), nullable=False),
        pa.field("f1", pa.float64(), nullable=False),
        pa.field("loss", pa.float64(), nullable=False),
        pa.field("effect_loss", pa.float64(), nullable=False),  # auxiliary effect head (0 when off)
        pa.field("response_nll", pa.float64(), nullable=False),  # response model on the episodes (0 when off)
        pa.field("response_rmse", pa.float64(), nullable=False),
        pa.field("grad_norm", pa.float64(), nullable=False),
        pa.field("learning_rate", pa.float64(), nullable=False),
        pa.field("wall_time", pa.float64(), nullable=False),  # seconds of training up to this episode, resumes included
    ]
)


# One row per (SCM, replicate, buffer size, model): the response model measured as a model beside the response-curve
# GP (``evaluate.response_eval``). The protocol that made it (n_obs, replicates, sizes, seed, grid) is in the file's
# schema metadata (``RESPONSE_PROTOCOL_KEY``).
RESPONSE_QUALITY_SCHEMA = pa.schema(
    [
        # identity
        *SCM_IDENTITY_FIELDS,
        pa.field("replicate", pa.int32(), nullable=False),  # buffers of one replicate are nested over the sizes
        pa.field("interventions", pa.int32(), nullable=False),  # k: random interventions beside the n_obs samples
        pa.field("model", pa.string(), nullable=False),  # response_model, response_gp or flat
        # scores against the exact curve
        pa.field("rmse", pa.float64(), nullable=False),  # in units of Y's spread over the buffer
        pa.field("nll", pa.float64(), nullable=False),  # Gaussian negative log likelihood, same units
        pa.field("best_improvement", pa.float64(), nullable=False),  # normalized improvement of the predicted best
        # provenance
        *PROVENANCE_FIELDS,
    ]
)
RESPONSE_PROTOCOL_KEY = b"acbo.response_protocol"

# One long tidy table. kind: "metric" (per method and scope), "paired_difference" (policy mode minus
# baseline on the same SCM and episode), "step_curve" (best-so-far normalized improvement after each
# intervention; step = intervention number from 1), "training" (raw training log; step = episode),
# "response_quality" (the response model measured as a model: method = model, step = interventions in the buffer,
# metric = rmse / nll / best_improvement) and "response_paired" (response_model minus response_gp on the same
# buffers).
# suite in ``report.scopes.POOLED_SCOPES`` pools the SCMs of one mechanism class over every suite; seed null
# pools every seed (or a baseline, which has none).
SUMMARY_SCHEMA = pa.schema(
    [
        pa.field("config", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("baseline", pa.string()),
        pa.field("suite", pa.string()),
        pa.field("level", pa.int16()),
        pa.field("seed", pa.int32()),
        pa.field("step", pa.int32()),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("better", pa.string()),
        pa.field("mean", pa.float64()),
        pa.field("ci_low", pa.float64()),
        pa.field("ci_high", pa.float64()),
        pa.field("n_seeds", pa.int32(), nullable=False),
        pa.field("n_scms", pa.int32(), nullable=False),
        pa.field("n_episodes", pa.int32(), nullable=False),
    ]
)


def _check_columns(names, schema: pa.Schema, what: str) -> None:
    missing = [n for n in schema.names if n not in names]
    extra = [c for c in names if c not in schema.names]
    if missing or extra:
        raise TableError(f"{what}: missing columns {missing}, unexpected columns {extra}")


def to_table(frame: pd.DataFrame, schema: pa.Schema, what: str) -> pa.Table:
    _check_columns(frame.columns, schema, what)
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def columns_to_table(columns: dict, rows: int, schema: pa.Schema, what: str) -> pa.Table:
    """A table of ``rows`` rows with exactly ``schema`` from NumPy columns; a scalar fills its column (None
    with nulls).

    Arrow arrays are built from their buffers: ``pyarrow.array`` imports pandas (to recognise its types), which
    is 0.3 s of an evaluation job's start-up.
    """
    _check_columns(columns, schema, what)
    return pa.Table.from_arrays([_arrow_column(columns[field.name], field.type, rows) for field in schema],
                                schema=schema)


def _arrow_column(value, kind: pa.DataType, rows: int) -> pa.Array:
    if value is None:
        return pa.nulls(rows, kind)
    if kind == pa.string():
        if np.ndim(value) == 0:  # one string on every row: encoded once
            one = str(value).encode()
            offsets, data = np.arange(rows + 1, dtype=np.int32) * len(one), one * rows
        else:
            encoded = [str(v).encode() for v in value]
            offsets = np.zeros(rows + 1, np.int32)
            np.cumsum([len(e) for e in encoded], out=offsets[1:])
            data = b"".join(encoded)
        return pa.Array.from_buffers(kind, rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    if kind == pa.bool_():
        bits = np.packbits(np.broadcast_to(np.asarray(value, dtype=bool), rows), bitorder="little")
        return pa.Array.from_buffers(kind, rows, [None, pa.py_buffer(bits)])
    data = np.ascontiguousarray(np.broadcast_to(np.asarray(value).astype(kind.to_pandas_dtype()), rows))
    return pa.Array.from_buffers(kind, rows, [None, pa.py_buffer(data)])


def write_table(frame: pd.DataFrame, schema: pa.Schema, path: str | Path, what: str = "table",
                metadata: dict | None = None) -> None:
    """Write ``frame`` with exactly ``schema`` (atomically), with ``metadata`` (bytes -> bytes) in its schema;
    deterministic bytes for equal frames."""
    table = to_table(frame, schema, what)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False)


def write_table_parts(tables, path: str | Path, what: str = "table") -> int:
    """Write the tables of an iterable one after another as row groups of one table (atomically), so a table
    never has to be in memory whole; returns the number of rows. The temporary file is made when the first
    table is ready, so a job killed while computing it (the whole run, for an evaluation) leaves nothing."""
    tables = iter(tables)
    first = next(tables, None)
    if first is None:
        raise TableError(f"{what}: nothing to write")
    rows = 0
    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(tmp, first.schema, compression="zstd", write_statistics=False)
        try:
            for table in itertools.chain([first], tables):
                writer.write_table(table)
                rows += table.num_rows
        finally:
            writer.close()
    return rows


def read_table(path: str | Path, schema: pa.Schema) -> pd.DataFrame:
    table = pq.read_table(path)
    if table.schema.remove_metadata() != schema.remove_metadata():
        raise TableError(f"{path}: schema differs from the documented one")
    return table.to_pandas()
