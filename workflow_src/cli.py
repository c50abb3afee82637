"""``acbo``: one command-line entry point with a subcommand per workflow stage.

Each ``run_*_cli`` adapter turns parsed arguments into calls of the library; the library never imports
from here. A stage's settings come from ``--spec`` (the config slice a rule passes) or from the config
file, through one parser (``cli_args.stage_spec``). User-facing errors (``errors.UserError``) become one line on
stderr and exit status 2. Heavy modules (JAX, numpy) are imported only by the subcommands that need them,
after the BLAS threads are pinned and XLA is configured.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import jobstats, paths  # jobstats first: it stamps the job start
from .atomic import check_outputs
from .cli_args import (
    check_at_least_one,
    checkpoint_stage_spec,
    config_file,
    load_checkpoint_args,
    methods_arg,
    stage_spec,
)
from .compile_cache import configure_jax
from .errors import ConfigError, UserError
from .interrupt import report as report_interrupt
from .interrupt import stop_on_interrupt
from .paths import DEFAULT_CONFIG
from .suite_catalogue import FIXED_SUITES, GENERATED_NAMES

# Single-threaded BLAS, set by ``main`` before numpy loads: multi-threaded reductions change the last bits
# of the summary's bootstrap statistics with the number of cores, and the tables must not depend on the
# machine. Only the command sets it; importing the library changes no environment.
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pin_blas_threads() -> None:
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")


# --- suite -------------------------------------------------------------------------------------------


def run_suite_generate_cli(args) -> int:
    from .suites.build import build_suite

    spec = stage_spec(args, "suite", args.name)
    out = args.out or paths.suite_file(spec["name"])
    check_outputs({"--out": (out, "file")}, [spec.get("user_file"), config_file(args)])
    jobstats.ready()
    build_suite(spec, out)
    print(f"wrote {out}")
    return 0


def run_suite_validate_cli(args) -> int:
    from .errors import SuiteError
    from .suites.suite_io import load_suite

    status = 0
    for path in args.files:
        try:
            suite = load_suite(path)  # a suite/2 file's stored oracles are checked too
        except SuiteError as err:
            status = 1
            for problem in err.problems:
                print(f"{path}: {problem}")
        else:
            print(f"{path}: ok ({len(suite.scms)} SCMs)")
    return status


def run_suite_oracle_cli(args) -> int:
    from .suites.build import oracle_json, oracle_table, printable
    from .suites.suite_io import load_suite

    suite = load_suite(args.file)
    if args.json:
        print(oracle_json(suite))
    else:
        for row in oracle_table(suite):
            se = f" (se {row['max_se']:.2g}, {row['method']})" if "max_se" in row else ""
            print(f"{printable(row['id'])}: do({printable(row['variable'])}={row['value']:g}) y*={row['y_star']:.4f} "
                  f"mu_y={row['mu_y']:.4f}{se}")
    return 0


def run_suite_show_cli(args) -> int:
    from .suites.build import show_suite
    from .suites.suite_io import load_suite

    print(show_suite(load_suite(args.file)))
    return 0


# --- train / evaluate / baselines / summarize / compare / bench -----------------------------------------


def run_train_cli(args) -> int:
    from .config import check_option

    check_option("--seed", args.seed, "seed")
    check_at_least_one(("--episodes", args.episodes), ("--stop-after", args.stop_after))
    spec = stage_spec(args, "train", args.experiment)
    if args.episodes is not None:
        spec = {**spec, "episodes": args.episodes}
    curriculum = spec["train_suites"]
    suites = args.suites or paths.train_suite_files(spec["levels"], args.suites_dir, curriculum)
    per_level = len(paths.CURRICULA[curriculum])
    if len(suites) != per_level * len(spec["levels"]):
        raise UserError(f"--suites: {len(suites)} files given; the {curriculum} curriculum needs {per_level} per "
                        f"level {spec['levels']}, grouped by level")
    checkpoint_dir = Path(args.checkpoint_dir or paths.checkpoint_dir(args.experiment, args.seed))
    log_table = Path(args.log_table or paths.train_log(args.experiment, args.seed))
    check_outputs({"--checkpoint-dir": (checkpoint_dir, "into"), "--log-table": (log_table, "file")},
                  [*suites, config_file(args)])
    configure_jax(args.threads)
    from .train.loop import Interrupted, train

    out = paths.TrainPaths(checkpoint_dir=checkpoint_dir, log_table=log_table)
    jobstats.ready()
    try:
        train(args.experiment, spec, args.seed, [Path(s) for s in suites], out, verbose=args.verbose,
              progress=not args.no_progress, stop_after=args.stop_after)
    except Interrupted as exc:
        print(f"acbo train: {exc}", file=sys.stderr)
        return 3
    return 0


def run_evaluate_cli(args) -> int:
    protocol = checkpoint_stage_spec(args, "evaluate")
    modes = methods_arg(args.methods, protocol["policy_modes"])
    policy_config, params, identity = load_checkpoint_args(args)
    from .evaluate.methods import policy_methods
    from .evaluate.run import write_evaluation
    from .suites.suite_io import load_suite

    suite = load_suite(args.suite)
    try:
        methods = policy_methods(policy_config, modes, source=str(args.checkpoint),
                                 skip_unavailable=args.methods is None)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    jobstats.ready()
    write_evaluation(methods, params, suite, protocol, identity, args.out, "evaluation table")
    return 0


def run_response_quality_cli(args) -> int:
    protocol = checkpoint_stage_spec(args, "response_quality")
    policy_config, params, identity = load_checkpoint_args(args)
    from .evaluate.response_eval import check_response_model, write_response_quality
    from .policy.network import make_policy
    from .suites.suite_io import load_suite

    check_response_model(policy_config, args.checkpoint)
    suite = load_suite(args.suite)
    jobstats.ready()
    frame = write_response_quality(make_policy(policy_config), params, suite, protocol, identity, args.out)
    means = frame.groupby(["interventions", "model"])[["rmse", "nll", "best_improvement"]].mean()
    print(f"wrote {args.out} ({len(frame)} rows); means per interventions and model:\n{means.round(3).to_string()}")
    return 0


def run_baselines_cli(args) -> int:
    protocol = stage_spec(args, "baselines")
    check_outputs({"--out": (args.out, "file")}, [args.suite, config_file(args)])
    names = methods_arg(args.methods, protocol["baselines"])
    configure_jax(args.threads)
    from .evaluate.baselines import baseline_methods
    from .evaluate.run import write_evaluation
    from .suites.suite_io import load_suite

    suite = load_suite(args.suite)
    try:
        methods = baseline_methods(names)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    jobstats.ready()
    write_evaluation(methods, None, suite, protocol, {}, args.out, "baseline table")
    return 0


def run_plugin_cli(args) -> int:
    from .config import baselines_slice, plugin_slice

    def from_config(cfg):
        return plugin_slice(cfg, args.name) if args.name in cfg["evaluation"]["plugins"] else baselines_slice(cfg)

    spec = stage_spec(args, "plugin", build=from_config)
    check_outputs({"--out": (args.out, "file")}, [args.file, args.suite, config_file(args)])
    configure_jax(args.threads)
    from .evaluate.plugins import check_act, check_records, load_plugin
    from .evaluate.registry import BASELINES
    from .evaluate.run import write_evaluation
    from .suites.suite_io import load_suite

    suite = load_suite(args.suite)
    plugin = load_plugin(args.file, args.name or spec.get("name"), spec.get("settings"), reserved=BASELINES)
    check_act(plugin, suite, spec)
    write_evaluation([plugin.method()], None, suite, spec, {"plugin_hash": plugin.file_hash}, args.out,
                     f"plug-in table of {plugin.name}", check=check_records(plugin, suite))
    return 0


def run_summarize_cli(args) -> int:
    from .report.inputs import load_inputs
    from .report.page import charts_dir_problem
    from .report.pages import OPTIONAL_CHARTS, SUMMARY_CHARTS, write_summary_page
    from .report.summarize import provenance, summarize, write_summary

    spec = stage_spec(args, "summary", args.experiment)
    if spec["config"] != args.experiment:
        raise ConfigError(f"--spec is for config {spec['config']!r}, not {args.experiment!r}")
    name = spec["config"]
    files = paths.summary_inputs(name, spec["seeds"], spec["eval_suites"], args.results, args.checkpoints,
                                 spec.get("plugins", []), spec["response_model"])
    for kind in files:  # the files a rule passes, else the standard layout under --results and --checkpoints
        files[kind] = getattr(args, f"{kind}_files", None) or files[kind]
    out_table = Path(args.out_table or paths.summary_table(name, args.results))
    out_html = Path(args.out_html or paths.summary_html(name, args.results))
    charts_dir = Path(args.charts_dir or paths.charts_dir(name, args.results))
    read = [*(f for kind in files.values() for f in kind), config_file(args)]
    check_outputs({"--out-table": (out_table, "file"), "--out-html": (out_html, "file"),
                   "--charts-dir": (charts_dir, "replace")}, read)
    problem = charts_dir_problem(charts_dir, SUMMARY_CHARTS + OPTIONAL_CHARTS)
    if problem:
        raise UserError(f"--charts-dir {charts_dir}: {problem}")
    inputs = load_inputs(spec, files)
    jobstats.ready()
    summary = summarize(inputs)
    meta = provenance(inputs)
    write_summary(summary, meta, out_table)
    write_summary_page(summary, meta, out_html, charts_dir)
    print(f"wrote {out_table}, {out_html} and {charts_dir}/")
    return 0


def run_compare_cli(args) -> int:
    from .report.pages import write_compare_page
    from .report.summarize import load_summaries

    check_outputs({"--out": (args.out, "file")}, args.summaries)
    frames, metas = load_summaries(args.summaries)
    write_compare_page(frames, metas, args.out)
    print(f"wrote {args.out}")
    return 0


def run_bench_cli(args) -> int:
    check_outputs({"--out": (args.out, "into")}, [config_file(args)])
    configure_jax(args.threads)
    from .bench import BENCHMARKS, run_bench

    only = set(args.only.split(",")) if args.only else set(BENCHMARKS)
    unknown = sorted(only - set(BENCHMARKS))
    if unknown:
        raise UserError(f"--only: unknown benchmark {', '.join(map(repr, unknown))} (known: {', '.join(BENCHMARKS)})")
    run_bench(args.config, only, Path(args.out), args.threads or 1)
    return 0


# --- parser --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acbo", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the package version and exit")
    sub = parser.add_subparsers(dest="command")
    for add_command in (add_suite_parser, add_train_parser, add_evaluation_parsers, add_summarize_parser,
                        add_compare_parser, add_bench_parser):
        add_command(sub)
    return parser


def add_config(p, packaged: bool = False) -> None:
    fallback = "; where there is none, the packaged default protocol" if packaged else ""
    p.add_argument("--config", default=None if packaged else DEFAULT_CONFIG,
                   help=f"config file (default {DEFAULT_CONFIG}{fallback})")
    p.add_argument("--spec", help="the stage's config slice as JSON (used by the workflow rules)")


def add_suite_parser(sub) -> None:
    suite = sub.add_parser("suite", help="generate, validate and inspect SCM suite files")
    suite_sub = suite.add_subparsers(dest="suite_command", required=True)
    gen = suite_sub.add_parser("generate", help="write a suite file from the config")
    gen.add_argument("name", nargs="?",
                     help=f"suite name: {GENERATED_NAMES}, a fixed suite ({', '.join(FIXED_SUITES)}) or a user suite")
    gen.add_argument("--out", help=f"output path (default {paths.suite_file('NAME')})")
    add_config(gen)
    gen.set_defaults(func=run_suite_generate_cli)
    val = suite_sub.add_parser("validate", help="check suite files; one line per problem")
    val.add_argument("files", nargs="+")
    val.set_defaults(func=run_suite_validate_cli)
    orc = suite_sub.add_parser("oracle", help="exact oracle action and values per SCM")
    orc.add_argument("file")
    orc.add_argument("--json", action="store_true", help="print a JSON list")
    orc.set_defaults(func=run_suite_oracle_cli)
    show = suite_sub.add_parser("show", help="a readable table of a suite")
    show.add_argument("file")
    show.set_defaults(func=run_suite_show_cli)


def add_train_parser(sub) -> None:
    train = sub.add_parser("train", help="train the policy with GRPO for one experiment config and seed")
    train.add_argument("--experiment", required=True, help="experiment config name")
    train.add_argument("--seed", type=int, required=True)
    train.add_argument("--suites", nargs="+", metavar="FILE",
                       help="the training suites of the levels, grouped by level in order (two per level if mixed)")
    train.add_argument("--suites-dir", default=paths.SUITES, help="else: where the train-LNN.json files are")
    train.add_argument("--checkpoint-dir", help=f"default {paths.checkpoint_dir('EXPERIMENT', 'SEED')}")
    train.add_argument("--log-table", help=f"default {paths.train_log('EXPERIMENT', 'SEED')}")
    train.add_argument("--episodes", type=int, help="override the number of episodes")
    train.add_argument("--stop-after", type=int, help="stop (as if interrupted) after this many episodes")
    train.add_argument("--verbose", action="store_true", help="print per-step detail")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config(train)
    add_threads(train)
    train.set_defaults(func=run_train_cli)


def add_evaluation_parsers(sub) -> None:
    """``evaluate``, ``baselines`` and ``plugin``: the commands that run methods on a suite into a table."""

    def add_evaluation(name, help, methods_help, func):
        p = sub.add_parser(name, help=help)
        p.add_argument("--suite", required=True, help="suite file")
        p.add_argument("--out", required=True, help="output Parquet table")
        if methods_help:
            p.add_argument("--methods", help=methods_help)
        add_config(p, packaged=True)
        add_threads(p)
        p.set_defaults(func=func)
        return p

    ev = add_evaluation("evaluate", "evaluate a trained checkpoint on a suite",
                        "comma-separated policy modes (default from config: greedy,sampled)", run_evaluate_cli)
    rq = add_evaluation("response-quality", "measure a checkpoint's response model as a model on a suite (RMSE, "
                        "NLL, predicted best), beside the response-curve GP", None, run_response_quality_cli)
    for p in (ev, rq):
        p.add_argument("--checkpoint", required=True)
        p.add_argument("--experiment", help="config name recorded in the table (default: the checkpoint's)")
        p.add_argument("--seed", type=int, help="seed recorded in the table (default: the checkpoint's)")
        p.add_argument("--train-config-hash", help="refuse a checkpoint whose config_hash differs (the rule passes "
                       "the hash of the config's training slice)")
    add_evaluation("baselines", "run the non-learned baselines on a suite",
                   "comma-separated baselines (default from config)", run_baselines_cli)
    plug = sub.add_parser("plugin", help="check a plug-in method file and run it on a suite")
    plug.add_argument("--file", required=True, help="the plug-in file (defines act(settings, view, key))")
    plug.add_argument("--name", help="method name (default: the file's NAME, else its stem)")
    plug.add_argument("--suite", required=True, help="suite file")
    plug.add_argument("--out", required=True, help="output Parquet table")
    add_config(plug, packaged=True)
    add_threads(plug)
    plug.set_defaults(func=run_plugin_cli)


def add_summarize_parser(sub) -> None:
    summ = sub.add_parser("summarize", help="aggregate one experiment config into summary.parquet/.html")
    summ.add_argument("--experiment", required=True)
    summ.add_argument("--results", default=paths.RESULTS, help="the results directory")
    summ.add_argument("--checkpoints", default=paths.CHECKPOINTS, help="the checkpoints directory")
    inputs_help = "in sorted seed and suite order (default: the standard layout under --results/--checkpoints)"
    summ.add_argument("--evals", dest="evals_files", nargs="+", metavar="FILE",
                      help=f"the evaluation tables, seed-major, {inputs_help}")
    summ.add_argument("--baselines", dest="baselines_files", nargs="+", metavar="FILE",
                      help=f"the baseline tables, {inputs_help}")
    summ.add_argument("--plugins", dest="plugins_files", nargs="+", metavar="FILE",
                      help=f"the plug-in tables, method-major, {inputs_help}")
    summ.add_argument("--train-logs", dest="train_logs_files", nargs="+", metavar="FILE",
                      help=f"the training logs, {inputs_help}")
    summ.add_argument("--final-checkpoints", dest="checkpoints_files", nargs="+", metavar="FILE",
                      help=f"the final checkpoints, {inputs_help}")
    summ.add_argument("--suites", dest="suites_files", nargs="+", metavar="FILE",
                      help=f"the suite files (which SCMs are linear), {inputs_help}")
    summ.add_argument("--response-quality", dest="response_quality_files", nargs="+", metavar="FILE",
                      help=f"the response quality tables (configs with a response model), seed-major, {inputs_help}")
    summ.add_argument("--out-table", help=f"default {paths.summary_table('EXPERIMENT')}")
    summ.add_argument("--out-html", help=f"default {paths.summary_html('EXPERIMENT')}")
    summ.add_argument("--charts-dir", help=f"default {paths.charts_dir('EXPERIMENT')}")
    add_config(summ)
    summ.set_defaults(func=run_summarize_cli)


def add_compare_parser(sub) -> None:
    comp = sub.add_parser("compare", help="compare the configs that have summaries")
    comp.add_argument("summaries", nargs="+", help="summary.parquet files")
    comp.add_argument("--out", default=paths.compare_html())
    comp.set_defaults(func=run_compare_cli)


def add_bench_parser(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (training, evaluation, suites); writes JSON")
    bench.add_argument("--out", default="results/bench", help="output directory")
    bench.add_argument("--only", help="comma-separated benchmark names")
    add_config(bench)
    add_threads(bench)
    bench.set_defaults(func=run_bench_cli)


def add_threads(p) -> None:
    p.add_argument("--threads", type=int, default=None, help="CPU threads for XLA (the rule's threads)")


def main(argv: list[str] | None = None) -> int:
    pin_blas_threads()
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
    if args.command in INTERRUPTIBLE:
        stop_on_interrupt(args.command)
    try:
        status = args.func(args)
    except KeyboardInterrupt:
        return report_interrupt(args.command)
    except UserError as err:
        print(f"acbo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file that could not be read or written after the checks: said in one line
        where = f"{err.filename}: " if err.filename else ""
        print(f"acbo {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    command = " ".join(filter(None, (args.command, getattr(args, "suite_command", None))))
    if status == 0 and command in JOB_COMMANDS:
        print(jobstats.summary_line(command), flush=True)
    return status


# the commands that workflow rules run: their logs end with a job-stats line (read by ``make bench``)
JOB_COMMANDS = ("suite generate", "train", "evaluate", "response-quality", "baselines", "summarize", "compare")
# the commands that run compiled programs, which Python's own Ctrl-C handling cannot stop
INTERRUPTIBLE = ("train", "evaluate", "response-quality", "baselines", "plugin", "bench")


if __name__ == "__main__":
    sys.exit(main())
