"""Numeric algorithms shared by tasks and command lines: tiling, metrics."""
