"""Schedules: cron and interval definitions (``job_periodics``) and the scheduler that enqueues them, sweeps and prunes."""
