"""``acbo``: one command-line entry point with a subcommand per workflow stage.

Heavy modules (JAX) are imported only by the subcommands that need them, after the XLA thread count
has been set from ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Single-threaded BLAS before numpy loads: multi-threaded reductions change the last bits of the summary's
# bootstrap statistics with the number of cores, and the tables must not depend on the machine.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from .compile_cache import configure_jax  # noqa: E402  (after the BLAS pin)
from .config import DEFAULT_CONFIG, ConfigError, load_config, suite_slice  # noqa: E402


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""


def _spec(args, build) -> dict:
    """The stage's config slice: given as canonical JSON by a rule, or read from the config file."""
    if getattr(args, "spec", None):
        return json.loads(args.spec)
    return build(load_config(args.config))


# --- suite -------------------------------------------------------------------------------------------


def cmd_suite_generate(args) -> int:
    from .suites import build_suite

    spec = _spec(args, lambda cfg: suite_slice(cfg, args.name))
    out = args.out or f"results/suites/{spec['name']}.json"
    build_suite(spec, out)
    print(f"wrote {out}")
    return 0


def cmd_suite_validate(args) -> int:
    from .suite_io import SuiteError, load_suite

    status = 0
    for path in args.files:
        try:
            suite = load_suite(path)
        except SuiteError as err:
            status = 1
            for problem in err.problems:
                print(f"{path}: {problem}")
        else:
            print(f"{path}: ok ({len(suite.scms)} SCMs)")
    return status


def cmd_suite_oracle(args) -> int:
    from .suite_io import load_suite
    from .suites import oracle_json, oracle_table

    suite = load_suite(args.file)
    if args.json:
        print(oracle_json(suite))
    else:
        for row in oracle_table(suite):
            print(f"{row['id']}: do({row['variable']}={row['value']:g}) y*={row['y_star']:.4f} mu_y={row['mu_y']:.4f}")
    return 0


def cmd_suite_show(args) -> int:
    from .suite_io import load_suite
    from .suites import show_suite

    print(show_suite(load_suite(args.file)))
    return 0


# --- train / evaluate / baselines / summarize / compare / bench -----------------------------------------


def cmd_train(args) -> int:
    configure_jax(args.threads)
    from .train import run_training_cli

    return run_training_cli(args)


def cmd_evaluate(args) -> int:
    configure_jax(args.threads)
    from .evaluate import run_evaluate_cli

    return run_evaluate_cli(args)


def cmd_baselines(args) -> int:
    configure_jax(args.threads)
    from .evaluate import run_baselines_cli

    return run_baselines_cli(args)


def cmd_summarize(args) -> int:
    from .summarize import run_summarize_cli

    return run_summarize_cli(args)


def cmd_compare(args) -> int:
    from .summarize import run_compare_cli

    return run_compare_cli(args)


def cmd_bench(args) -> int:
    configure_jax(args.threads)
    from .bench import run_bench_cli

    return run_bench_cli(args)


# --- parser --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acbo", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the package version and exit")
    sub = parser.add_subparsers(dest="command")

    def add_config(p, packaged=False):
        fallback = "; where there is none, the packaged default protocol" if packaged else ""
        p.add_argument("--config", default=None if packaged else DEFAULT_CONFIG,
                       help=f"config file (default {DEFAULT_CONFIG}{fallback})")
        p.add_argument("--spec", help="the stage's config slice as JSON (used by the workflow rules)")

    suite = sub.add_parser("suite", help="generate, validate and inspect SCM suite files")
    suite_sub = suite.add_subparsers(dest="suite_command", required=True)
    gen = suite_sub.add_parser("generate", help="write a suite file from the config")
    gen.add_argument("name", nargs="?", help="suite name: train-LNN, heldout-LNN, heldout-classic or a user suite")
    gen.add_argument("--out", help="output path (default results/suites/NAME.json)")
    add_config(gen)
    gen.set_defaults(func=cmd_suite_generate)
    val = suite_sub.add_parser("validate", help="check suite files; one line per problem")
    val.add_argument("files", nargs="+")
    val.set_defaults(func=cmd_suite_validate)
    orc = suite_sub.add_parser("oracle", help="exact oracle action and values per SCM")
    orc.add_argument("file")
    orc.add_argument("--json", action="store_true", help="print a JSON list")
    orc.set_defaults(func=cmd_suite_oracle)
    show = suite_sub.add_parser("show", help="a readable table of a suite")
    show.add_argument("file")
    show.set_defaults(func=cmd_suite_show)

    train = sub.add_parser("train", help="train the policy with GRPO for one experiment config and seed")
    train.add_argument("--experiment", required=True, help="experiment config name")
    train.add_argument("--seed", type=int, required=True)
    train.add_argument("--suites-dir", default="results/suites", help="where train-LNN.json files are")
    train.add_argument("--checkpoint-dir", help="default checkpoints/EXPERIMENT/seed_SEED")
    train.add_argument("--log-table", help="default results/EXPERIMENT/train/seed_SEED.parquet")
    train.add_argument("--episodes", type=int, help="override the number of episodes")
    train.add_argument("--stop-after", type=int, help="stop (as if interrupted) after this many episodes")
    train.add_argument("--verbose", action="store_true", help="print per-step detail")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config(train)
    add_threads(train)
    train.set_defaults(func=cmd_train)

    def add_evaluation(name, help, methods_help, func):
        p = sub.add_parser(name, help=help)
        p.add_argument("--suite", required=True, help="suite file")
        p.add_argument("--out", required=True, help="output Parquet table")
        p.add_argument("--methods", help=methods_help)
        add_config(p, packaged=True)
        add_threads(p)
        p.set_defaults(func=func)
        return p

    ev = add_evaluation("evaluate", "evaluate a trained checkpoint on a suite",
                        "comma-separated policy modes (default from config: greedy,sampled)", cmd_evaluate)
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--experiment", help="config name recorded in the table (default: the checkpoint's)")
    ev.add_argument("--seed", type=int, help="seed recorded in the table (default: the checkpoint's)")
    add_evaluation("baselines", "run the non-learned baselines on a suite",
                   "comma-separated baselines (default from config)", cmd_baselines)

    summ = sub.add_parser("summarize", help="aggregate one experiment config into summary.parquet/.html")
    summ.add_argument("--experiment", required=True)
    summ.add_argument("--results", default="results", help="the results directory")
    summ.add_argument("--checkpoints", default="checkpoints", help="the checkpoints directory")
    summ.add_argument("--out-table", help="default results/EXPERIMENT/summary.parquet")
    summ.add_argument("--out-html", help="default results/EXPERIMENT/summary.html")
    summ.add_argument("--charts-dir", help="default results/EXPERIMENT/charts")
    add_config(summ)
    summ.set_defaults(func=cmd_summarize)

    comp = sub.add_parser("compare", help="compare the configs that have summaries")
    comp.add_argument("summaries", nargs="+", help="summary.parquet files")
    comp.add_argument("--out", default="results/compare.html")
    comp.set_defaults(func=cmd_compare)

    bench = sub.add_parser("bench", help="benchmarks (training, evaluation, suites); writes JSON")
    bench.add_argument("--out", default="results/bench", help="output directory")
    bench.add_argument("--only", help="comma-separated benchmark names")
    add_config(bench)
    add_threads(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def add_threads(p) -> None:
    p.add_argument("--threads", type=int, default=None, help="CPU threads for XLA (the rule's threads)")


def _refuse_folder_outputs(args) -> None:
    """An output file option naming an existing folder: refused before any work is done."""
    for name in ("out", "out_table", "out_html", "log_table"):
        value = getattr(args, name, None)
        if value and args.command != "bench" and Path(value).is_dir():  # bench --out is a folder
            raise CLIError(f"--{name.replace('_', '-')} {value}: is an existing folder, not a file")


def main(argv: list[str] | None = None) -> int:
    from .checkpoint_errors import CheckpointError
    from .suite_io import SuiteError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command == "suite" and args.suite_command == "generate" and not (args.name or args.spec):
        parser.error("suite generate needs a suite NAME or --spec")
    try:
        _refuse_folder_outputs(args)
        return args.func(args)
    except (ConfigError, SuiteError, CheckpointError, CLIError) as err:
        print(f"acbo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
