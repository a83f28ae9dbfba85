"""Hyperparameter search: Ray Tune runs the trials, Optuna samples, a named rule selects.

``pipeline.search.space`` and ``pipeline.search.trial`` need no Ray; ``run_search`` (in
``runner``) imports it.
"""

from pipeline.search.space import SearchSpace, parse_space
from pipeline.search.trial import TrialSetup, read_record, rerun, rows_of

__all__ = ["SearchSpace", "TrialSetup", "parse_space", "read_record", "rerun", "rows_of"]
