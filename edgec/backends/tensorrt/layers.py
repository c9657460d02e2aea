"""What the engine is made of, from the build log: its kernels and the ONNX nodes each one computes.

Built with ProfilingVerbosity.DETAILED, TensorRT logs (VERBOSE) one line per engine layer:

    Layers:
    Name: __myl_CorrMulAddMaxMinMulAddMinMaxMul_myl0_1, LayerType: runtime_fusion, Inputs: [...], ...,
      Metadata: [ONNX Layer: conv][ONNX Layer: bn][ONNX Layer: relu6][ONNX Layer: hardswish]

So the build itself tells which ONNX nodes were fused into one kernel and which were folded away (in
no kernel: a Flatten that became a layout, a Transpose absorbed into a GEMM), with no GPU needed
(EngineInspector needs a deserialized engine, hence a GPU).
"""

from __future__ import annotations

import re

import onnx

LOG_PREFIX = "Layers:"
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]*)\]")


def summarize(log: str | None, model: onnx.ModelProto) -> dict | None:
    """{"layers", "onnx_nodes", "fused", "folded"} from the "Layers:" log message; None without one.

    fused: the ONNX node names of each layer that computes more than one node, in engine order;
    folded: the ONNX nodes (names) that no layer lists."""
    if not log:
        return None
    lines = [line for line in log.splitlines()[1:] if line.startswith("Name: ")]
    per_layer = [list(dict.fromkeys(_ONNX_LAYER.findall(line.rsplit("Metadata:", 1)[-1]))) for line in lines]
    computed = {name for names in per_layer for name in names}
    names = [n.name for n in model.graph.node]
    return {"layers": len(lines), "onnx_nodes": len(names), "fused": [n for n in per_layer if len(n) > 1],
            "folded": [n for n in names if n and n not in computed]}
