"""The start-up hook of ``tritriage trace``.

This directory is put first on the traced command's ``PYTHONPATH``: its
``sitecustomize.py`` loads ``tritriage_trace_hook`` (standard library only, so
that the command's interpreter needs nothing of tritriage).  It is a package
only so that it ships with tritriage; nothing imports it as one.
"""
