"""``glassforge serve``: HTTP APIs over one job queue.

* :mod:`.config` — :class:`~.config.ServerConfig` (address, folders, device).
* :mod:`.jobs` — :class:`~.jobs.Job` and the FIFO :class:`~.jobs.JobQueue` with one worker thread.
* :mod:`.history` — the SQLite history of every job; :mod:`.metrics` — Prometheus counters.
* :mod:`.generation` — the txt2img job (interrupt, skip, previews, files on disk).
* :mod:`.a1111` — the A1111/Forge-compatible ``/sdapi/v1`` router; :mod:`.own` — ``/api`` and ``/metrics``.
* :mod:`.app` — :func:`~.app.create_app` wires them into one FastAPI app.

Nothing here is imported by ``glassforge --help``; FastAPI is imported only when the server is built.
"""
