"""Numbers about outputs, numpy only: whether two tensors match (`compare`), top-1 accuracy
(`accuracy`), detection mAP (`detection`)."""
