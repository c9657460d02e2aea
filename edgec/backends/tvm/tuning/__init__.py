"""MetaSchedule tuning for the TVM backend's CPU kernels (`edgec tune`, `edgec compile --tuning-db`).

database/: what compile reads (store: the directory; apply: the winners). search/: what `edgec tune`
runs (tasks: the kernels compile would schedule; baseline: their rules-only times; workers: builder
and runner; tuner: the search). search imports database, never the reverse.
"""
