"""``python -m bench --peers``: flywheel against pgqueuer (PostgreSQL) and huey (SQLite), interleaved.

The peers are installed into their own virtualenv, ``bench/.peers-venv`` (git-ignored; they
are never dependencies of the project), and each runs through its driver script in that
virtualenv as a subprocess: :mod:`bench.peers.pgqueuer_driver`, :mod:`bench.peers.huey_driver`.
Every system's runner process speaks :mod:`bench.peers.protocol`, and is measured the same
way (:mod:`bench.peers.run`).
"""
