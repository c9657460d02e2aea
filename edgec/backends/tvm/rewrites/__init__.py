"""Relax-level rewrites edgec runs before TVM legalizes ops to TIR (one rewrite per module)."""
