"""Compliance exports: one report model built from the chain, rendered by pluggable formatters.

``report`` builds the pure model, ``registry`` names the formats (one module each, ``interface.Formatter``),
``service`` ties them to a ``Ledger`` and records ``export`` blocks, ``verify`` checks a produced file later.
"""
