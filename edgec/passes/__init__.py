"""Graph passes: one file per pass, each exposing `run(model, ctx) -> model`, registered by name in
`base.REGISTRY` with `@register`; importing this package registers all of them."""

from edgec.passes import (  # noqa: F401  (each module registers its pass)
    batchnorm_to_affine,
    cancel_transpose_reshape,
    dedup_initializers,
    eliminate_common_subexpressions,
    eliminate_dead,
    eliminate_identity,
    fold_constants,
    fuse_batchnorm,
    fuse_matmul_add,
    infer_shapes,
    normalize_opset,
    slim,
)
from edgec.passes.base import PassContext, PassRecord, available_passes, get_pass, register
from edgec.passes.manager import DEFAULT_PIPELINE, optimize_file, run_pipeline

__all__ = ["DEFAULT_PIPELINE", "PassContext", "PassRecord", "available_passes", "get_pass", "optimize_file",
           "register", "run_pipeline"]
