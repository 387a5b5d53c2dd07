"""flywheel's built-in plugins; each module registers through the ``flywheel`` entry-point group."""
