"""Data into nnU-Net's raw format: BraTS (2018-2021 and 2023 layouts) via ``brats.convert_brats``,
predictions back to BraTS labels via ``labels.brats_predictions_to_original``, and a synthetic
BraTS-like generator ``synthetic.generate_synthetic_brats`` for tests and demos."""
