"""The built-in workers: ``exec``, ``shell``, ``python``, ``mage`` and ``http``.

Each is one module and one plugin (entry points of the same names), so any of them can be
blocked with ``FLYWHEEL_DISABLE_PLUGINS``. Their args use go-flywheel's JSON field names,
so a Go and a Python node can run each other's jobs. See docs/workers.md.
"""
