"""The search's results: one row per trial and run length (trials.parquet / trials.csv), the
selected configuration (best.json) and the closing summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.outputs import write_json
from pipeline.search.finished import table_digests
from pipeline.search.spec import Resolved
from pipeline.search.trial import read_record, rows_of
from pipeline.selection import SELECTION_RULES, select, train_env_keys
from pipeline.versions import library_versions


def collect(resolved: Resolved, grid) -> list[dict]:
    """One row per trial and run length, from the done records (and Tune for the rest)."""
    rows = []
    for result in grid:
        sampled = dict(result.config or {})
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or (Path(result.path).name if result.path else "?")
        error = str(result.error).strip().splitlines()[-1][:300] if result.error else None
        try:
            key = resolved.setup.key(sampled)
        except ConfigError as exc:  # cannot happen for a validated space; never lose the table
            key, sampled, error = None, {}, error or str(exc)
        record = read_record(resolved.setup.records_dir, key) if key else None
        if record is not None:
            for row in rows_of(record):
                rows.append(_row(resolved, trial_id, key, sampled, row, record))
            continue
        reported_any = "trial_key" in metrics  # Tune fills in its own keys in any case
        if metrics.get("finished"):
            status, error = "failed", (
                f"finished on {metrics.get('hostname', 'another node')} but its done record "
                f"is not in {resolved.setup.records_dir}: on a cluster --out must be on "
                "storage that every node shares")
        else:
            status = "failed" if error else "stopped" if reported_any else "not run"
        reported = {k.split("/")[0]: {"mean": v} for k, v in metrics.items()
                    if k.endswith("/mean")}
        rows.append(_row(resolved, trial_id, key, sampled,
                         {"steps": metrics.get("step") if reported_any else None,
                          "status": status, "n_diverged": metrics.get("diverged"),
                          "metrics": reported}, None, error))
    # Finished work that Tune no longer knows of (killed before its state reached storage,
    # then other trials were asked for): still this search's results, so still in the table.
    seen = {r["trial_key"] for r in rows}
    for path in sorted(Path(resolved.setup.records_dir).glob("*.json")):
        record = read_record(path.parent, path.stem)
        if record and record.get("search_hash") == resolved.hash and record["key"] not in seen:
            for row in rows_of(record):
                rows.append(_row(resolved, record.get("trial", "?"), record["key"],
                                 record["sampled"], row, record))
    # by trial key (a hash of what the trial computes), not by Tune's random trial id: the same
    # search gives the same table order, and so the same tie-breaks in selection
    rows.sort(key=lambda r: (str(r["trial_key"]), r["steps"] or 0))
    keys = train_env_keys([{"metrics": r["_metrics"]} for r in rows])
    rule = SELECTION_RULES[resolved.setup.selection]
    for r in rows:
        score = rule.score({"metrics": r["_metrics"]}, keys) if r["status"] == "ok" else None
        r["score"] = score
    return rows


def _row(resolved: Resolved, trial_id, key, sampled, row, record, error=None) -> dict:
    setup = resolved.setup
    try:
        cfg = setup.config(sampled).to_dict()
    except ConfigError:
        cfg = dict(setup.base)
    result = (record or {}).get("result", {})
    out = {"search": resolved.hash, "trial": trial_id, "trial_key": key,
           "status": row["status"], "steps": row["steps"], "selection": setup.selection,
           "score": None, "n_seeds": len(setup.seeds),
           "seeds": ",".join(map(str, setup.seeds)), "n_diverged": row["n_diverged"]}
    for name, stat in sorted(row["metrics"].items()):
        out[f"{name}.mean"] = stat.get("mean")
        out[f"{name}.std"] = stat.get("std")
    for k, v in cfg.items():
        out[f"config.{k}"] = json.dumps(v) if isinstance(v, list) else v
    if record is not None:  # a finished run length; otherwise steps is where it stopped
        out["config.steps"] = row["steps"]
    # the weight the schedule had reached at the run's last step, as the trainer recorded it
    out["final_penalty_weight"] = final_penalty_weight(result, row["steps"])
    runtime, node = result.get("runtime", {}), (record or {}).get("node", {})
    data = result.get("data", {})
    out.update({"searched": json.dumps(sampled, sort_keys=True),
                "wall_s": runtime.get("wall_s"), "device": runtime.get("device"),
                "dtype": runtime.get("dtype"), "dtype_requested": runtime.get("dtype_requested"),
                "dtype_reason": runtime.get("dtype_reason"),
                "formulation": runtime.get("formulation"), "cpu": runtime.get("cpu"),
                "cpu_capability": runtime.get("cpu_capability"), "node_id": node.get("node_id"),
                "node_ip": node.get("node_ip"), "hostname": node.get("hostname"),
                "data_source": data.get("source"), "data_reduced": data.get("reduced"),
                "data_sha256": setup.data_sha256, "git": runtime.get("git"),
                "versions": json.dumps(result.get("versions", {}), sort_keys=True),
                "error": error, "_metrics": row["metrics"]})
    return out


def final_penalty_weight(result: dict, steps: int | None) -> float | None:
    """The penalty weight at step ``steps - 1`` of a trial's recorded curve (None: no record)."""
    weights = (result.get("curves") or {}).get("penalty_weight")
    if not weights or not steps or len(weights) < steps:
        return None
    weight = weights[steps - 1]
    return math.inf if weight is None else float(weight)  # the trainer stores inf as None


def write_outputs(resolved: Resolved, rows: list[dict]) -> dict | None:
    import pandas as pd

    out = resolved.out
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "_metrics"} for r in rows])
    frame.to_parquet(out / "trials.parquet", index=False)
    frame.to_csv(out / "trials.csv", index=False)
    records = [{"status": r["status"], "metrics": r["_metrics"]} for r in rows]
    best = None
    try:
        if not any(r["status"] == "ok" for r in rows):
            raise ConfigError("no trial finished without diverging or failing")
        chosen = select(records, resolved.setup.selection)
    except ConfigError as exc:
        rule = resolved.setup.selection  # what the evaluation and the report need to say so
        best = {"selection": rule, "uses_test_data": SELECTION_RULES[rule].uses_test_data,
                "selected": None, "reason": str(exc), "search": resolved.hash,
                "seeds": list(resolved.setup.seeds), "dataset": resolved.spec.dataset,
                "method": resolved.spec.method}
    else:
        row = rows[chosen.index]
        record = read_record(resolved.setup.records_dir, row["trial_key"])
        searched = json.loads(row["searched"])
        # the config of the selected run length: train it with `train --set` to reproduce
        config = make_config(None, **{**resolved.setup.config(searched).to_dict(),
                                      "steps": row["steps"]}).to_dict()
        best = {"selection": chosen.rule, "uses_test_data": chosen.uses_test_data,
                "score": chosen.score, "search": resolved.hash, "trial": row["trial"],
                "trial_key": row["trial_key"], "steps": row["steps"], "searched": searched,
                "config": config,
                "seeds": list(resolved.setup.seeds), "metrics": row["_metrics"],
                "data": (record or {}).get("result", {}).get("data"),
                "versions": library_versions()}
    best["tables"] = table_digests(out)  # a table edited later is refused by its readers
    write_json(out / "best.json", best, default=str)
    return best


def summary(resolved: Resolved, rows: list[dict], best: dict | None) -> str:
    statuses = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    lines = [f"search {resolved.hash} done: " + ", ".join(f"{n} {s}" for s, n in
                                                          sorted(statuses.items())),
             f"wrote {resolved.out}/trials.parquet, trials.csv, best.json; Optuna study "
             f"{resolved.study_name!r} in {resolved.storage}"]
    rule = SELECTION_RULES[resolved.setup.selection]
    if best and best.get("selected", True) is not None and "score" in best:
        test = best["metrics"].get("test_acc", {}).get("mean")
        lines.append(
            f"selected by {best['selection']}"
            f"{' (USES TEST DATA)' if rule.uses_test_data else ''}: score {best['score']:.4f}"
            + (f", test {100 * test:.1f}%" if test is not None else "")
            + f"; {json.dumps(best['searched'])}, steps {best['steps']}")
    elif best:
        lines.append(f"no trial could be selected: {best.get('reason')}")
    return "\n".join(lines)
