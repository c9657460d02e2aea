"""Graph passes: one file per pass, each exposing `run(model, ctx) -> model`, registered by name."""

from edgec.passes.manager import (  # noqa: F401
    DEFAULT_PIPELINE,
    PassContext,
    PassRecord,
    available_passes,
    get_pass,
    run_pipeline,
)
