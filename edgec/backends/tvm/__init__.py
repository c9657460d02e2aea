"""The TVM (Relax) backend: `backend` (the Backend), `pipelines` (Relax passes per target kind), `rewrites`
(edgec's Relax rewrites), `schedules` (rules per target kind), `tuning` (database and MetaSchedule search),
`cubin` / `link` (packaging native code), `determinism`, `intrinsics`, `lower_rnn` (ONNX-level RNN unrolling).
Importing it has no side effects: TVM's settings are applied where TVM is first used (edgec.tvm_process)."""
