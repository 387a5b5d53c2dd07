"""Storage: the driver seam a database plugin implements, the schema models and the ``Database`` handle.

Nothing is imported here; :mod:`flywheel.storage.driver` is the module a driver author reads.
"""
