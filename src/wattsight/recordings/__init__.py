"""Recordings (scenarios and their steps) and jobs: stored in SQLite, served over REST, their energy reported.

======================  ===============================================================
:mod:`.db`              the SQLite file (WAL mode) of recordings, steps and jobs
:mod:`.rules`           what a write may do (step order, stop, retries): pure checks
:mod:`.service`         the :class:`~.service.Recorder` the API holds; JSON views
:mod:`.report`          the figures of a range: energy per probe and node, mean and peak power
:mod:`.routes`          ``/api/v1/recordings`` and ``/api/v1/jobs``
:mod:`.jobs`            a job's nodes, for the web UI's and export's ``?job=``
:mod:`.schedulers`      jobs from Slurm (``sacct``) and OAR (REST API, ``oarstat -J``)
:mod:`.cli`             ``wattsight jobs import|list|show|energy`` (with :mod:`.client`)
======================  ===============================================================

docs/recordings.md and docs/jobs.md describe them for users.
"""
