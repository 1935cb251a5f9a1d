"""Prediction when some modality files are absent."""
