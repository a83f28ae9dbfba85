"""The study's report: provenance, tables (markdown + LaTeX), figures (PNG + PDF), metrics.json.

``inputs`` reads the finished results, ``provenance`` says what produced them, ``published``
holds every published number with its upstream source, ``tables`` and ``figures`` draw them,
and ``build`` writes the whole report. Nothing here trains.
"""
