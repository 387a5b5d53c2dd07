"""Schedules: cron and interval definitions (``job_periodics``) and the scheduler.

The scheduler enqueues what the schedules make due, sweeps expired leases and prunes.
"""
