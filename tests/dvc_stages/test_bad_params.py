"""Bad params.yaml: the stage that reads the bad key fails, naming it, before any heavy work,
and every output already computed stays as it was (restored from DVC's run cache after)."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.dvc_stages.project_copy import dvc, stages_run, tree_digest


def _edit(params: dict, path: str, value) -> dict:
    out = copy.deepcopy(params)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return out


_DELETE = object()

ALL = ("data/envs/colored_mnist", "data/envs/colored_fashion_mnist", "data/envs/sem",
       "results/search", "results/evaluate", "results/sem", "reports")
# (params edit, words the error must contain, the stage that fails, outputs it cannot touch):
# one case per kind of stage and of check (each is a `dvc repro`, ~7 s); the checkers'
# other keys are tested in-process (tests/test_params.py)
CASES = [
    (("search.trails", 3), ["trails", "trials"], "search@", (*ALL[:3], *ALL[4:])),
    (("make_envs.datasets.colored_mnsit", {"source": "auto"}),
     ["colored_mnsit", "colored_mnist"], "make_envs@colored_mnsit", ALL),
    # study lists drive the matrix: DVC itself refuses the new stage before it runs
    (("study.methods", ["irm", "irmv2"]), ["search_spaces.irmv2", "missing"],
     "search@colored_mnist-irmv2", ALL),
    (("evaluate.seed", [5]), ["seed", "seeds"], "evaluate_preset@",
     (*ALL[:4], *ALL[5:])),
]


@pytest.mark.parametrize("edit, words, stage, untouched", CASES,
                         ids=[c[0][0] for c in CASES])
def test_bad_params_fail_in_their_stage_and_lose_nothing(repo, edit, words, stage, untouched):
    params_path = repo / "params.yaml"
    original = params_path.read_text()
    before = {d: tree_digest(repo / d) for d in ALL}
    try:
        params_path.write_text(yaml.safe_dump(_edit(yaml.safe_load(original), *edit),
                                              sort_keys=False))
        done = dvc(repo, "repro", check=False)
        output = done.stdout + done.stderr
        assert done.returncode != 0, output[-3000:]
        for word in words:
            assert word in output, (word, output[-3000:])
        failed = [ln for ln in output.splitlines() if "failed to reproduce" in ln]
        assert failed and stage in failed[0], output[-3000:]
        assert "starting a local Ray" not in output  # no search got as far as starting Ray
        for d in untouched:
            assert tree_digest(repo / d) == before[d], f"{d} changed"
    finally:
        params_path.write_text(original)
    # with the params fixed, DVC restores what it removed before the failing stage ran (the
    # run cache), without retraining anything: every output is back, byte for byte
    assert stages_run(dvc(repo, "repro").stdout) == set()
    assert {d: tree_digest(repo / d) for d in ALL} == before
