"""The IRM paper's linear SEM experiments: the estimators (``estimators``), the study over every
setup and repetition (``study``) and the appendix's minimal IRMv1 loop (``appendix``).

The data come from ``pipeline.environments.sem`` and ``pipeline.environments.sem_appendix``;
the tables that set the results beside the published numbers are the report's
(``pipeline.report.tables``): nothing here knows a published number or a caption.
"""
