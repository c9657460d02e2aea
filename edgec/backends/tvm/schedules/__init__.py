"""Schedule rules for TVM PrimFuncs, one folder per target kind (dlight's layout): `cpu/` (edgec's
Gemm, DotGemm and Injective rules), `cuda/` (tensor-core implicit-GEMM convs, before dlight's GPU
rules); `_loops` and `target_facts` are shared by both."""
