"""``python -m cli``: the same entry point as the ``ledger`` console script."""

from cli.main import run

run()
