"""Cross-modal complementarity criterion (CCH; Xie, Xu, Sanguinetti, arXiv 2510.13182):
distilling teacher T into student S helps when I(H_T; H_S) > I(H_S; Y).

- :mod:`.estimators`          KSG / Ross k-NN and Gaussian mutual information, with options
- :mod:`.gaussian_experiment` the paper's joint Gaussian model, closed-form risks and MIs
- :mod:`.representations`     voxel representations of a trained multi-encoder model
- :mod:`.criterion`           the teacher/student table, heatmap, and the CSV PRISM reads
"""
from nnunet_prism.cch.criterion import cch_table, read_student_mask
from nnunet_prism.cch.estimators import (MIOptions, gaussian_mi, gaussian_mi_discrete, ksg_mi,
                                         mutual_information, ross_mi)

__all__ = ["MIOptions", "ksg_mi", "ross_mi", "gaussian_mi", "gaussian_mi_discrete", "mutual_information",
           "cch_table", "read_student_mask"]
