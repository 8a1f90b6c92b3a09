"""Render what the store holds.

``view.py`` reads one run into a frozen ``ReportView`` (kernel statuses,
per-file groups, root causes, totals); every format renders from it:
``terminal.py`` (rich tables, the default), ``markdown.py`` (``--md``, through
``templates/report.md.j2``), ``machine.py`` (``--json``, ``--junit``,
``--sarif``), ``diff.py`` (``--diff``).  ``command.py`` is what the CLI calls;
``inventory.py`` renders discovery (``list``, ``scan --collect-only``).
"""
