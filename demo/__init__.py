"""The ``make demo`` walk-through: train a tiny torch model, record major and micro versions, audit, list them.

Runs from the repository (``python -m demo``); it is not part of the installed package.
"""
