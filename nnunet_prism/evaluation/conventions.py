"""Evaluation conventions: how a case with an empty reference (or prediction) scores.

Two conventions are in use, and numbers made under one are not comparable with the other,
mostly for ET (many lower-grade cases have no enhancing tumour):

========================  =========================  ===========================================
case                      ``nnunet`` (nnU-Net)        ``brats`` (BraTS challenge, RFNet, mmFormer)
========================  =========================  ===========================================
reference and prediction  Dice NaN (case skipped),    Dice 1, HD95 0
empty                     HD95 NaN (skipped)
reference empty,          Dice 0, HD95 = image        Dice 0, HD95 373.13 mm
prediction not (or the    diagonal in mm (373.13
other way round)          for 240 x 240 x 155 at 1 mm)
========================  =========================  ===========================================

Both average the same way: the mean over a subset's cases (NaN skipped), then the mean over the
subsets ("Average"). Sources: nnU-Net's ``compute_metrics`` (NaN for both empty);
the BraTS evaluation (CaPTk / BraTS toolkit): 1 and 0 for Dice, 0 and 373.13 for HD95; RFNet's
and mmFormer's evaluation code add 1e-8 to numerator and denominator, which gives 1 for both
empty and ~0 for one empty; DeMoSeg's evaluation returns 1 / 0 explicitly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Union

#: The HD95 the BraTS challenge assigns when exactly one mask is empty (the 240 x 240 x 155 mm diagonal).
BRATS_HD95_PENALTY = 373.13


@dataclass(frozen=True)
class Convention:
    name: str
    dice_both_empty: float
    hd95_both_empty: float
    hd95_one_empty: Union[str, float]
    description: str

    def evaluate_case_kwargs(self) -> Dict[str, object]:
        """Keyword arguments of ``metrics.evaluate_case``."""
        return {"dice_both_empty": self.dice_both_empty, "hd95_both_empty": self.hd95_both_empty,
                "hd95_one_empty": self.hd95_one_empty}


CONVENTIONS: Dict[str, Convention] = {
    "nnunet": Convention("nnunet", float("nan"), float("nan"), "diagonal",
                         "nnU-Net: empty reference and prediction score NaN (skipped in means); one empty: "
                         "Dice 0, HD95 the image diagonal"),
    "brats": Convention("brats", 1.0, 0.0, BRATS_HD95_PENALTY,
                        "BraTS: empty reference and prediction score Dice 1, HD95 0; one empty: Dice 0, "
                        f"HD95 {BRATS_HD95_PENALTY} mm"),
}

DEFAULT_CONVENTION = "nnunet"


def get_convention(name: Union[str, Convention, None]) -> Convention:
    if isinstance(name, Convention):
        return name
    key = (name or DEFAULT_CONVENTION).strip().lower()
    if key not in CONVENTIONS:
        from nnunet_prism.evaluation.metrics import EvaluationError
        raise EvaluationError(f"unknown evaluation convention '{name}' (choose {', '.join(CONVENTIONS)})")
    return CONVENTIONS[key]


__all__ = ["BRATS_HD95_PENALTY", "Convention", "CONVENTIONS", "DEFAULT_CONVENTION", "get_convention"]
