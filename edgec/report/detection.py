"""Report rows for detectors: mAP@0.5 (`accuracy`) and mAP@0.5:0.95 (`map_50_95`) on the `shapes` test split.

A detector's outputs are (boxes [B, N, 4], scores [B, C, N], selected_indices [M, 3]); a raw variant
without the third gets the zoo detector's NMS (edgec.runtime.host_nms) applied after it, on every row
alike. Per row: mAP of its own selections; `top1_agreement` is the fraction of test images whose selected
(class, box) rows equal the reference's exactly; max/mean_abs_err compare boxes and scores with the
reference's. Latency is one image through `Module.run`, so it includes NMS wherever NMS runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import edgec.runtime as rt
from edgec.compiler import compile_model
from edgec.errors import UnsupportedError
from edgec.metrics.detection import coco_map
from edgec.report.host import host_info
from edgec.report.rows import cannot_run, engine_note, latency, row
from edgec.runtime.host_nms import non_max_suppression


def _nms_defaults() -> dict:
    from edgec.zoo import detector

    return {"max_output_boxes_per_class": detector.TOP_K, "iou_threshold": detector.IOU_THRESHOLD,
            "score_threshold": detector.SCORE_THRESHOLD}


def per_image(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's outputs -> (boxes [N, 4], scores [C, N], selected rows (class, box) [k, 2])."""
    boxes, scores = outputs[0], outputs[1]
    selected = outputs[2] if len(outputs) > 2 else non_max_suppression(boxes, scores, **_nms_defaults())
    return boxes[0], scores[0], np.asarray(selected)[:, 1:]


def detections(image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes [N, 4], scores [C, N], selected (c, n)) -> (boxes [k, 4], scores [k], labels [k])."""
    boxes, scores, sel = image
    return boxes[sel[:, 1]], scores[sel[:, 0], sel[:, 1]], sel[:, 0]


def score(images: list, reference: list, data) -> dict:
    """Row values for per-image outputs against the reference's and the ground truth."""
    gt_boxes, gt_labels, num_classes = data.targets
    m = coco_map([detections(i) for i in images], gt_boxes, gt_labels, num_classes)
    same = [np.array_equal(a[2], b[2]) for a, b in zip(images, reference)]
    err = np.concatenate([np.abs(np.concatenate([a[k].ravel() for k in (0, 1)]).astype(np.float64)
                                 - np.concatenate([b[k].ravel() for k in (0, 1)])) for a, b in zip(images, reference)])
    return {"accuracy": m["map_50"], "map_50_95": m["map_50_95"], "top1_agreement": float(np.mean(same)),
            "max_abs_err": float(err.max()), "mean_abs_err": float(err.mean())}


def evaluate(subject, data, targets, precisions, backends, out_dir: Path, warmup: int, iters: int, say) -> dict:
    """The report dict for a detector (same schema as edgec.report.evaluate.evaluate)."""
    say(f"reference ({subject.framework}) on {len(data.x)} samples")
    ref = [per_image(subject.outputs(data.x[i:i + 1])) for i in range(len(data.x))]
    sample = data.x[:1]
    ref_latency, throughput = latency(lambda: per_image(subject.outputs(sample)), warmup, iters)
    ref_row = score(ref, ref, data)
    rows = [row(subject.framework, "cpu", "fp32", latency_ms=ref_latency, throughput_per_s=throughput, ran_on="host",
                 note=f"reference; mAP@0.5:0.95 {100 * ref_row['map_50_95']:.2f}%", **ref_row)]
    for precision in precisions:
        for target in targets:
            for backend in backends:
                say(f"{backend} {target} {precision}")
                artifact = out_dir / "artifacts" / f"{subject.name}-{backend}-{target}-{precision}.edgec"
                result = None
                try:
                    result = compile_model(subject.onnx_path, target, artifact, backend=backend, precision=precision)
                    module = rt.load(artifact, device=result.manifest["target"]["device"])
                    run = lambda x: per_image(list(module.run({subject.input_name: x}).values()))  # noqa: E731
                    images = [run(data.x[i:i + 1]) for i in range(len(data.x))]
                    row_latency, throughput = latency(lambda: run(sample), warmup, iters)
                except (UnsupportedError, rt.ArtifactError) as e:
                    rows.append(row(backend, target, precision, "unsupported", str(e)) if result is None
                                else cannot_run(result, e, artifact.stat().st_size))
                    continue
                except Exception as e:  # a report records failures and goes on with the other rows
                    rows.append(row(backend, target, precision, "failed", str(e)))
                    continue
                values = score(images, ref, data)
                where = [f"NMS on {n['runs_on']} ({n['strategy']})"
                         for n in (result.manifest.get("nms") or {}).get("nodes", [])]
                note = "; ".join(n for n in [f"accuracy is mAP@0.5, mAP@0.5:0.95 {100 * values['map_50_95']:.2f}%",
                                             *where, engine_note(result)] if n)
                rows.append(row(backend, target, precision, note=note, latency_ms=row_latency, ran_on="host",
                                 throughput_per_s=throughput, artifact_bytes=artifact.stat().st_size,
                                 compile_s=round(result.seconds, 3), **values))
    host = host_info()
    return {"model": subject.name, "dataset": data.name, "n_eval": int(len(data.x)), "host": host,
            "edgec_version": host["edgec_version"],
            "reference": {"framework": subject.framework, "accuracy": ref_row["accuracy"],
                          "map_50_95": ref_row["map_50_95"]}, "rows": rows}
