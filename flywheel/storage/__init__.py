"""Storage: the driver seam a database plugin implements, the schema models and the ``Database`` handle.

Only the default URL is defined here, so the CLI and the config read it without importing
peewee; :mod:`flywheel.storage.driver` is the module a driver author reads.
"""

#: The embedded default: a SQLite file in the working directory.
DEFAULT_URL = "sqlite:///flywheel.db"
