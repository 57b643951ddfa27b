"""The ``atfr`` command line (installed as the ``atfr_cli`` package)."""
