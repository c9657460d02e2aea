"""Measured accuracy/latency reports: evaluate every backend x target x precision, then render."""
