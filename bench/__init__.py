"""flywheel's benchmark harness: ``python -m bench --db URL --scenario NAME``.

Scenarios (see ``docs/benchmarks.md``): ``enqueue`` (one insert call per job), ``bulk``
(one ``insert_many``), ``drain`` (runner processes empty a pre-filled queue, verified by
counting ``succeeded`` rows), ``latency`` (enqueue→done on an idle runner) and ``all``
(the standard matrix). Every measurement is one JSON object on one line.
"""
