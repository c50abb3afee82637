"""The checks of ``acbo``'s arguments that come before any work: a stage's ``--spec`` (or the config file's
slice), ``--methods`` lists and counts, a checkpoint command's options and checkpoint. Each refusal is a
``UserError`` of one line naming the option."""

from __future__ import annotations

import json

from .atomic import check_outputs
from .errors import ConfigError, UserError
from .paths import DEFAULT_CONFIG


def config_file(args) -> str:
    """The config file a command reads: ``--config``, else the default one (also where a ``--spec`` stands in for
    it), so that no output of the command can replace it."""
    return getattr(args, "config", None) or DEFAULT_CONFIG


def stage_spec(args, stage: str, key: str | None = None, build=None) -> dict:
    """The stage's config slice in its complete form (``config_schema.complete_slice``: every key the canonical
    form leaves out at its legacy default): ``--spec`` JSON (as a rule passes it), else ``build`` of the config
    file (default: the stage's slice of ``key``, ``config.stage_slice``).

    A ``--spec`` lacking any of the stage's ``config.spec_keys``, that is not a JSON object, or with a value the
    config schema refuses (``config.validate_slice``) is refused in one line before any work starts.
    """
    from .config import load_config_or_packaged, spec_keys, stage_slice, validate_slice
    from .config_schema import complete_slice

    if not getattr(args, "spec", None):
        build = build or (lambda cfg: stage_slice(stage, cfg, key))
        return complete_slice(stage, build(load_config_or_packaged(args.config, getattr(args, "command", "acbo"))))
    try:
        spec = json.loads(args.spec)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--spec is not valid JSON: {err}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"--spec must be a JSON object, not {type(spec).__name__}")
    missing = sorted(spec_keys(stage) - set(spec))
    if missing:
        raise ConfigError(f"--spec lacks {', '.join(missing)}")
    return validate_slice(stage, complete_slice(stage, spec))


def methods_arg(value: str | None, default) -> list[str]:
    if value is None:
        return list(default)
    names = [m.strip() for m in value.split(",") if m.strip()]
    if not names:
        raise UserError(f"--methods {value!r}: names no method")
    repeated = sorted({m for m in names if names.count(m) > 1})
    if repeated:
        raise UserError(f"--methods {value!r}: names {', '.join(repeated)} more than once")
    return names


def check_at_least_one(*options) -> None:
    """Refuse any ``(option, value)`` whose value is given and less than 1."""
    for option, value in options:
        if value is not None and value < 1:
            raise UserError(f"{option}: {value} is less than the minimum of 1")


def checkpoint_stage_spec(args, stage: str) -> dict:
    """The slice of a checkpoint's stage (``evaluate``, ``response-quality``), its ``--seed`` and outputs checked."""
    spec = stage_spec(args, stage)
    if args.seed is not None:
        from .config import check_option

        check_option("--seed", args.seed, "seed")
    check_outputs({"--out": (args.out, "file")}, [args.checkpoint, args.suite, config_file(args)])
    return spec


def load_checkpoint_args(args):
    """``(policy_config, params, identity)`` of ``--checkpoint``, checked; identity: what its table records."""
    from .compile_cache import configure_jax

    configure_jax(args.threads)
    from .evaluate.run import load_policy
    from .policy.checkpoint import check_config_hash
    from .provenance import file_hash

    header, policy_config, params = load_policy(args.checkpoint)
    check_config_hash(args.checkpoint, header, getattr(args, "train_config_hash", None))
    return policy_config, params, {"config": args.experiment or header.get("config_name"),
                                   "seed": args.seed if args.seed is not None else header.get("seed"),
                                   "checkpoint_hash": file_hash(args.checkpoint)}
