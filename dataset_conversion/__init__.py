"""Data into nnU-Net's raw format: BraTS (the 2018-2021, 2023 and 2024-2025 releases and the MET,
PED and MEN tasks) via ``brats.convert_brats``, predictions back to BraTS labels via
``labels.brats_predictions_to_original``, and a synthetic BraTS-like generator
``synthetic.generate_synthetic_brats`` for tests and demos."""
