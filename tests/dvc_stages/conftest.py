from __future__ import annotations

from pathlib import Path

import pytest

from tests.dvc_stages.project_copy import dvc, git, make_copy, tiny_params


@pytest.fixture(scope="session")
def repo(tmp_path_factory) -> Path:
    """A git + DVC copy of this repo with the tiny profile, after one full `dvc repro`."""
    root = make_copy(tmp_path_factory.mktemp("dvc") / "repo", tiny_params())
    done = dvc(root, "repro")
    (root / "first_repro.log").write_text(done.stdout)
    git(root, "add", "-A")  # as a user would: the lock file and the git-tracked metrics
    git(root, "commit", "-q", "-m", "first run")
    return root
