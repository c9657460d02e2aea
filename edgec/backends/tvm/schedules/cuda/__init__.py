"""CUDA schedule rules: edgec's tensor-core convs (`conv_tensor_core`), ahead of dlight's GPU rules."""
