"""The report's provenance: what differs from the paper profile, the hash of its inputs."""

from __future__ import annotations

import yaml

from pipeline.report.provenance import inputs_hash, scale_down


def test_scale_down_lists_every_difference_from_the_paper_profile():
    ours = {"search": {"trials": 4, "set": {"dtype": "bf16"}}, "study": {"a": [1]}}
    paper = {"search": {"trials": 50, "set": {}}, "study": {"a": [1]}}
    assert scale_down(ours, paper) == ['`search.set.dtype`: "bf16" (paper profile: not set)',
                                       "`search.trials`: 4 (paper profile: 50)"]
    assert scale_down(paper, paper) == []


def test_inputs_hash_ignores_the_report_stage_itself(tmp_path):
    lock = {"schema": "2.0", "stages": {"search": {"outs": [{"md5": "a"}]},
                                        "report": {"outs": [{"md5": "b"}]}}}
    path = tmp_path / "dvc.lock"
    path.write_text(yaml.safe_dump(lock))
    first = inputs_hash(path)
    lock["stages"]["report"]["outs"][0]["md5"] = "c"
    path.write_text(yaml.safe_dump(lock))
    assert inputs_hash(path) == first
    lock["stages"]["search"]["outs"][0]["md5"] = "d"
    path.write_text(yaml.safe_dump(lock))
    assert inputs_hash(path) != first
    assert inputs_hash(tmp_path / "missing.lock") is None
