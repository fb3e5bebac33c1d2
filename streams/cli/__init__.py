"""The ``spm`` command line: one typer sub-app per concern, assembled in ``main``."""
