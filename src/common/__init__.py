"""Shared helpers for the leukemia-classification reproductions."""
