"""Running jobs: the runner's claim loop, dispatch to workers, leases, finalisation and the Node.

Nothing is imported here, so reading a default (:mod:`flywheel.runtime.defaults`) costs no thread machinery.
"""
