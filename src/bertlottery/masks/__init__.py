"""Mask types and their files: HeadMlpMask (s-pruning: heads and MLPs) and WeightMask (m-pruning: single weights)."""
