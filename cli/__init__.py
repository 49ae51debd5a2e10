"""The ``ledger`` command line: a thin Typer shell over the ``ledger`` library."""
