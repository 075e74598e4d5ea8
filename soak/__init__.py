"""``python -m soak`` (``make soak``): the whole service under sustained load for minutes, with executors
killed (SIGKILL) and replaced on a schedule; throughput, latency and every process's memory sampled per
interval; the final accounting of every job submitted. Not part of ``make test``. See docs/reliability.md.
"""
