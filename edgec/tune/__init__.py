"""MetaSchedule tuning for the TVM backend's CPU kernels (`edgec tune`, `edgec compile --tuning-db`).

tasks: the kernels compile would schedule; baseline: their rules-only times; workers: builder and
runner; tuner: the search; store: the database directory; apply: using it when compiling.
"""
