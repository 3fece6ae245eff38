"""`python -m repro check|run|rank|figure|audit|where|data|params|regress|dvc-deps|bench` — what dvc.yaml and the README call.

Every command validates params.yaml in full first; a user error is one line on stderr and exit code 2
(`--debug` shows its traceback too).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from repro.spec.datasets import DOWNLOADABLE


def _params(args):
    from repro.al.methods import load_params

    return load_params(args.params, args.profile)


def _report_params(args):
    """params.yaml validated without the method checks: the figure and audit stages import no torch (the run
    stages validated the methods before they ran; records carry the raw-params fingerprint they are checked by)."""
    from repro.spec.params import load_params

    return load_params(args.params, args.profile)


def cmd_check(args) -> int:
    from repro.data.loaders.real import real_dataset_present
    from repro.spec.datasets import REAL

    params = _params(args)
    print(f"params.yaml OK (profile: {params.profile})")
    for name, exp in params.experiments:
        counts = exp.schedule.labeled_counts(exp.pool_size())
        print(f"  {name}: {exp.dataset}, {exp.backbone} x{exp.width:g}, recipe {exp.recipe}, "
              f"{len(exp.methods)} method(s) x {len(exp.seeds)} seed(s), labeled {counts[0]} -> {counts[-1]} "
              f"in {len(counts)} stages")
    print(f"real datasets under {params.data_dir}/:")
    for name in REAL:
        present = real_dataset_present(name, Path(params.data_dir))
        how = ("place it as data/README.md describes" if not REAL[name].downloads
               else f"python -m repro data download {name}")
        print(f"  {name:<11} {'present' if present else f'absent ({how})'}")
    return 0


def cmd_run(args) -> int:
    from repro.core import distributed
    from repro.exec import executors, runner

    try:
        array = executors.array_options(args.executor, args.partition, args.gpus_per_run, args.cpus_per_run,
                                        args.array_parallelism, args.timeout_min, args.jobs, distributed.launched())
    except executors.ExecutorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    opts = runner.RunOptions(args.params, args.profile, tuple(args.methods or ()), tuple(args.seeds or ()),
                             args.quiet, args.jobs, array)
    return runner.run_experiment(_params(args), args.experiment, opts)


def cmd_rank(args) -> int:
    from repro.al.rankings import run_rankings
    from repro.core.determinism import apply_run_settings

    params = _params(args)
    apply_run_settings(params)
    for path in run_rankings(params, args.name, progress=not args.quiet):
        print(f"wrote {path}")
    return 0


def cmd_figure(args) -> int:
    from repro.spec import artifacts as ex
    from repro.spec.params import load_params as load_raw_params

    art = ex.get_artifact(args.artifact)
    if isinstance(art, ex.SamplingTable):  # times the methods: the strategies (and torch) are needed
        from repro.tools.sampling_table import build_sampling_table

        js, md = build_sampling_table(_params(args), art)
        print(f"wrote {md} and {js}")
        return 0
    from repro.report.claims import load_registries

    params = _report_params(args)
    registry = load_registries(args.tables).get(art.paper)
    paper_params = load_raw_params(args.params, "paper")
    if isinstance(art, (ex.ResultsTable, ex.ProtocolTable)):
        from repro.report.tables import build_protocol_table, build_results_table

        build = build_results_table if isinstance(art, ex.ResultsTable) else build_protocol_table
        js, md = build(params, art, registry, paper_params)
        print(f"wrote {md} and {js}")
        return 0
    if isinstance(art, ex.RankingFigure):
        from repro.report.rankings_fig import build_ranking_figure

        png, js = build_ranking_figure(params, art)
    elif isinstance(art, ex.PredictionFigure):
        from repro.report.predictions import build_prediction_figure

        png, js = build_prediction_figure(params, art)
    elif isinstance(art, ex.EmbeddingFigure):
        from repro.report.embedding import build_embedding_figure

        png, js = build_embedding_figure(params, art)
    else:
        from repro.report.curves import build_curve_figure

        png, js = build_curve_figure(params, art, registry, paper_params)
    print(f"wrote {png} and {js}")
    return 0


def cmd_audit(args) -> int:
    from repro.report.audit import build_audit
    from repro.spec.params import load_params

    params = _report_params(args)
    if args.claim:
        from repro.report.audit import audit
        from repro.report.audit_markdown import render_claim

        try:
            result = audit(params, args.tables, paper_params=load_params(args.params, "paper"), only=args.claim)
        except KeyError as e:
            print(f"error: {e.args[0]}", file=sys.stderr)
            return 2
        print(render_claim(result["claims"][0]))
        if args.rerun:
            from repro.exec.rerun import rerun_claim

            return rerun_claim(args.params, args.profile, result["claims"][0])
        return 0
    if args.rerun:
        print("error: --rerun needs --claim ID", file=sys.stderr)
        return 2
    js, md = build_audit(params, args.tables, paper_params=load_params(args.params, "paper"))
    print(f"wrote {js} and {md}")
    print(md.read_text().split("\n\n")[1])
    return 0


def cmd_where(args) -> int:
    params = _params(args)
    reports = Path(params.reports_dir)
    print(f"profile: {params.profile}")
    print(f"figures and tables: {reports.resolve()}/")
    for p in sorted(reports.rglob("*")):
        if p.is_file() and p.suffix in (".png", ".json", ".md"):
            print(f"  {p}")
    print(f"run records: {Path(params.results_dir).resolve()}/<experiment>/<method>/seed<k>.json")
    return 0


def cmd_data(args) -> int:
    from repro.data.loaders.real import load_real

    params = _params(args)
    from repro.data.loaders.large import LARGE, prepare

    if args.name in LARGE:  # listed and unpacked, not decoded (too large for memory)

        n_train, n_test = prepare(args.name, Path(params.data_dir))
    else:
        train_x, _, test_x, _ = load_real(args.name, Path(params.data_dir), download=True)
        n_train, n_test = len(train_x), len(test_x)
    print(f"{args.name}: {n_train} train / {n_test} test images under {Path(params.data_dir) / args.name}/")
    return 0


def cmd_budget(args) -> int:
    from repro.exec import budget

    params = _params(args)
    if args.fit:
        costs = budget.fit(params)
        budget.COSTS_FILE.write_text(json.dumps(costs, indent=1) + "\n")
        print(f"wrote {budget.COSTS_FILE} ({len(costs['train_s_per_step'])} keys from {params.results_dir}/)")
    p = budget.plan(params)
    print(f"run plan, profile {params.profile} (estimates from {budget.COSTS_FILE.name}):")
    print(budget.describe(p))
    return 0 if p["total_s"] <= p["budget_s"] else 1


def cmd_bench(args) -> int:
    from repro.tools import bench

    return bench.main(args.what, args.repeats, args.full, args.methods, args.group, args.seeds, args.sizes)


def cmd_params(args) -> int:
    from repro.tools.params_table import main

    return main(args.json)


def cmd_dvc_deps(args) -> int:
    from repro.tools.dvc_deps import main

    return main(_params(args), write=args.write, params_path=args.params)


def cmd_regress(args) -> int:
    from repro.report.regression import main

    return main(args.reports, args.baseline, args.refresh)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro", description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--profile", choices=("smoke", "paper"), help="override params.yaml's profile")
    p.add_argument("--debug", action="store_true", help="show the traceback of a user error too")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate params.yaml and list the real datasets present").set_defaults(fn=cmd_check)
    r = sub.add_parser("run", help="run (or resume) an experiment's runs (methods x seeds)")
    r.add_argument("experiment")
    r.add_argument("methods", nargs="*", help="only these methods (default: the experiment's)")
    r.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: the experiment's)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--jobs", type=int, help="worker processes (default: REPRO_JOBS, else one per CPU core; 1 on CUDA)")
    r.add_argument("--executor", choices=("slurm", "local"),
                   help="submit the runs as one submitit job array and wait for it (default: run them here)")
    r.add_argument("--partition", help="--executor slurm: the Slurm partition")
    r.add_argument("--gpus-per-run", type=int, help="GPUs per array task (default: 1 on slurm, 0 local)")
    r.add_argument("--cpus-per-run", type=int, help="CPUs per array task (torch threads: params' `threads`)")
    r.add_argument("--array-parallelism", type=int, help="--executor slurm: at most N tasks at once")
    r.add_argument("--timeout-min", type=int, help=f"time limit per array task (default: {24 * 60})")
    r.set_defaults(fn=cmd_run)
    k = sub.add_parser("rank", help="score the whole unlabeled pool with several methods (DAL Fig. 3)")
    k.add_argument("name", help="a section of params.yaml `rankings`, e.g. dal_fig3")
    k.add_argument("--quiet", action="store_true")
    k.set_defaults(fn=cmd_rank)
    f = sub.add_parser("figure", help="aggregate run records into reports/<paper>/<name>.{png,json}")
    f.add_argument("artifact", help="e.g. mcdal/fig3")
    f.add_argument("--tables", default="paper_tables", help="the claims registry (markers, table columns)")
    f.set_defaults(fn=cmd_figure)
    a = sub.add_parser("audit", help="set every claim in paper_tables/ beside what was measured")
    a.add_argument("--tables", default="paper_tables")
    a.add_argument("--claim", metavar="ID", help="print one claim's row and evidence (writes nothing)")
    a.add_argument("--rerun", action="store_true",
                   help="with --claim: re-run its runs from scratch in a temporary directory and print a certificate")
    a.set_defaults(fn=cmd_audit)
    sub.add_parser("where", help="print where figures, tables and run records are").set_defaults(fn=cmd_where)
    d = sub.add_parser("data", help="dataset utilities")
    dsub = d.add_subparsers(dest="action", required=True)
    dl = dsub.add_parser("download", help="download a real dataset into data/<name>/ (needs a network)")
    dl.add_argument("name", choices=DOWNLOADABLE)
    dl.set_defaults(fn=cmd_data)
    pa = sub.add_parser("params", help="every method's parameter count by module, beside the papers' printed counts")
    pa.add_argument("--json", help="also write the rows here (the audit reads reports/parameters.json)")
    pa.set_defaults(fn=cmd_params)
    g = sub.add_parser("regress", help="compare reports/ with the committed baseline (nightly); --refresh replaces it")
    g.add_argument("--reports", default="reports")
    g.add_argument("--baseline", default="reports/baseline")
    g.add_argument("--refresh", action="store_true", help="copy the current artifact JSONs and audit into the baseline")
    g.set_defaults(fn=cmd_regress)
    v = sub.add_parser("dvc-deps", help="check (or --write) the code deps of dvc.yaml's run stages")
    v.add_argument("--write", action="store_true")
    v.set_defaults(fn=cmd_dvc_deps)
    u = sub.add_parser("budget", help="estimated seconds per experiment of the active profile vs the 30-min budget")
    u.add_argument("--fit", action="store_true", help="refit the per-step costs from the run records in results/")
    u.set_defaults(fn=cmd_budget)
    b = sub.add_parser("bench", help="throughput benchmarks (not tests)")
    b.add_argument("what", choices=("train", "sample", "runs", "precision"),
                   help="train: trainer img/s; sample: query time per method; runs: DAL's MNIST runs/hour alone vs "
                        "in lockstep; precision: the opt-in bf16 training on a CPU vs fp32 (paired seeds, TOST)")
    b.add_argument("--group", type=int, default=20, help="runs: the lockstep group size (default 20)")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--full", action="store_true", help="the full-size (GPU) workloads on any device")
    b.add_argument("--methods", nargs="+", help="sample: only these methods (default: all but dal)")
    b.add_argument("--seeds", type=int, default=5, help="precision: paired seeds per labeled count (default 5)")
    b.add_argument("--sizes", type=int, nargs="+", help="precision: labeled counts (default 100 500 2000)")
    b.set_defaults(fn=cmd_bench)
    return p


def user_error_line(e: BaseException) -> str | None:
    """The one `error: ...` line for a user error (bad params, data, records, names, paths); None for a bug."""
    from repro.al.strategies import BudgetError
    from repro.data.loaders.common import DatasetMissingError
    from repro.data.validate import DataError
    from repro.report.claims import RegistryError
    from repro.spec.runs import RecordError
    from repro.spec.schema import ConfigError

    if isinstance(e, ConfigError):
        return f"error: params.yaml: {e}"
    if isinstance(e, (DatasetMissingError, DataError, BudgetError, RecordError, RegistryError)):
        return f"error: {e}"
    if isinstance(e, KeyError) and len(e.args) == 1 and str(e.args[0]).startswith("unknown "):
        return f"error: {e.args[0]}"  # an unknown dataset, method, artifact... (not str(e): no quotes)
    if isinstance(e, FileNotFoundError):
        return f"error: {e.filename}: {e.strerror}" if e.filename else f"error: {e}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("interrupted; finished stages are checkpointed, run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        line = user_error_line(e)
        if line is None:
            raise  # a bug: its traceback is the report
        if args.debug:
            traceback.print_exc()
        print(" ".join(line.splitlines()), file=sys.stderr)
        return 2
