"""The checkers of ``params.yaml``: one module per section, each with one checker.

Each checker takes its section (``None`` when absent) and returns the settings a stage runs
with, or raises :class:`~pipeline.errors.ConfigError` naming the bad key or value and the valid
choices, before anything is trained. A stage imports only its own section's module, so its DVC
code deps hold no other section's checks.

- ``study``: what the DVC stages run (``study_settings``)
- ``make_envs``: the data seed and each dataset's parameters (``make_envs_settings``)
- ``search``: a search's settings (``spec_from_params``)
- ``evaluate``: the final evaluation (``evaluation_settings``)
- ``protocol``: the protocol table (``protocol_settings``)
- ``sem``: the SEM study (``sem_settings``)
- ``common``: what they share (a section's keys, mappings, lists of names and seeds)
"""
