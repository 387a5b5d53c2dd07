"""Storage: the driver seam a database plugin implements, the schema models and the ``Database`` handle.

Nothing is imported here. :mod:`flywheel.storage.driver` is the module a driver author reads
(the abstract :class:`~flywheel.storage.driver.Driver` and its data);
:mod:`~flywheel.storage.portable` has the methods peewee writes portably,
:mod:`~flywheel.storage.schema` the column lists the hand-written SQL derives from the models,
and :mod:`~flywheel.storage.migrations` the schema upgrades every driver's ``migrate`` runs.
"""
