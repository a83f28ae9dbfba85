"""Reading a finished search's outputs, checked: its ``best.json`` is this search's, and its
trials table is the one the search wrote (a table edited by hand, or files copied in from
another search, give an error naming the file, never a silently wrong number)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.errors import ConfigError

TABLES = ("trials.parquet", "trials.csv")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def table_digests(out: Path) -> dict[str, str]:
    """What ``best.json`` records of the tables written beside it."""
    return {name: file_sha256(out / name) for name in TABLES}


def _read(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing: {what}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}): {what}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} is not a JSON object: {what}")
    return value


def read_best(search: Path | str, dataset: str | None = None) -> dict:
    """``best.json`` of the search in ``search``, checked to be that search's (and, given
    ``dataset``, a search on it)."""
    search = Path(search)
    hint = "not a finished search (run it, or the same command again to finish it)"
    best = _read(search / "best.json", hint)
    spec = _read(search / "search.json", hint)
    if best.get("search") != spec.get("hash"):
        raise ConfigError(
            f"{search / 'best.json'} belongs to search {best.get('search')}, but "
            f"{search / 'search.json'} is search {spec.get('hash')}: the file was copied from "
            "another search; run the search again to rewrite it")
    searched = spec.get("search", {}).get("dataset")
    if dataset is not None and searched != dataset:
        raise ConfigError(f"{search} searched dataset {searched!r}, not {dataset!r}")
    return best


def read_table(search: Path | str, best: dict | None = None):
    """``trials.parquet`` of a finished search, checked against the digests in its
    ``best.json`` (searches written before the digests existed are read unchecked)."""
    import pandas as pd

    search = Path(search)
    best = best if best is not None else read_best(search)
    for name, digest in (best.get("tables") or {}).items():
        path = search / name
        if not path.is_file() or file_sha256(path) != digest:
            raise ConfigError(
                f"{path} is not the table the search wrote (missing, or edited since: its "
                f"sha256 differs from the one in {search / 'best.json'}); run the search "
                "command again to rewrite it from the done records (no trial is retrained)")
    return pd.read_parquet(search / "trials.parquet")
