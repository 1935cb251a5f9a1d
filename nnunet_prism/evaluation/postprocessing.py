"""Enhancing-tumour post-processing as the missing-modality BraTS literature does it.

RFNet (Ding, Yu, Yang, ICCV 2021) and mmFormer (Zhang et al., MICCAI 2022) report, besides the raw
enhancing-tumour (ET) Dice, a post-processed one: a case whose predicted ET has fewer than 500
voxels gets no ET at all. The voxels are not thrown away: in their evaluation code WT and TC are
computed from the unchanged prediction, so the removed ET counts as necrosis / non-enhancing core
(NCR) and stays in TC and WT; DeMoSeg (arXiv:2408.08708), "following RFNet, MAVP and GSS",
relabels ET below 500 voxels to NCR in the files before scoring. Rationale: a small ET prediction
in a case without enhancing tumour (many lower-grade gliomas) turns an ET Dice of 1 (both empty,
BraTS convention) into 0.

nnU-Net's BraTS labels (``dataset_conversion.labels``): 1 edema, 2 NCR, 3 ET, for label-based
and region-based (WT {1,2,3}, TC {2,3}, ET {3}) sets alike, since a region-based prediction is
written as a label map through ``regions_class_order``. ``suppress_small_et`` works on such label
maps; ``suppress_small_et_regions`` on a stack of binary region masks (one channel per region).
"""
from __future__ import annotations

from typing import Mapping, Optional, Tuple

import numpy as np

#: The threshold RFNet and mmFormer use (voxels of predicted ET).
LITERATURE_ET_MIN_VOXELS = 500

#: nnU-Net's BraTS labels as written by ``dataset_conversion``.
NNUNET_ET_LABEL, NNUNET_NCR_LABEL = 3, 2


def suppress_small_et(segmentation: np.ndarray, min_voxels: int, et_label: int = NNUNET_ET_LABEL,
                      ncr_label: int = NNUNET_NCR_LABEL) -> np.ndarray:
    """A copy of the label map ``segmentation`` in which ET (``et_label``) becomes NCR
    (``ncr_label``) when it has fewer than ``min_voxels`` voxels; unchanged when ``min_voxels``
    <= 0. TC and WT keep every voxel."""
    seg = np.array(segmentation, copy=True)
    if min_voxels > 0:
        et = seg == et_label
        if 0 < int(et.sum()) < min_voxels:
            seg[et] = ncr_label
    return seg


def suppress_small_et_regions(masks: np.ndarray, min_voxels: int, et_index: int,
                              tc_index: Optional[int] = None) -> np.ndarray:
    """Region-channel version: ``masks`` (R, ...) binary, one channel per region (e.g. WT, TC, ET).
    When the ET channel has fewer than ``min_voxels`` voxels it is cleared and its voxels are
    added to the TC channel (``tc_index``; they are normally there already)."""
    out = np.array(masks, dtype=bool, copy=True)
    if min_voxels > 0:
        et = out[et_index]
        if 0 < int(et.sum()) < min_voxels:
            if tc_index is not None:
                out[tc_index] |= et
            out[et_index] = False
    return out


def _labels_of(value) -> Tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)


def et_and_ncr_labels(labels: Mapping[str, object]) -> Tuple[int, int]:
    """(ET label, NCR label) from a dataset.json ``labels`` dict: the region/label named
    "enhancing tumor" / "enhancing" (one label) and, for NCR, "necrosis" or the tumour-core
    region minus ET. Raises ValueError when the set does not look like BraTS."""
    norm = {" ".join(str(k).lower().replace("_", " ").replace("-", " ").split()): v for k, v in labels.items()}
    et = next((norm[k] for k in ("enhancing tumor", "enhancing tumour", "enhancing", "et") if k in norm), None)
    if et is None or len(_labels_of(et)) != 1:
        raise ValueError("ET post-processing needs a BraTS-like label set with one 'enhancing' label "
                         f"(labels: {', '.join(labels)})")
    et_label = _labels_of(et)[0]
    for key in ("necrosis", "necrotic", "ncr", "tumor core", "tumour core"):
        if key in norm:
            rest = [v for v in _labels_of(norm[key]) if v != et_label]
            if len(rest) == 1:
                return et_label, rest[0]
    raise ValueError("ET post-processing needs a necrosis label or a tumour-core region with one label "
                     f"besides ET (labels: {', '.join(labels)})")


def pp_region_name(region: str, min_voxels: int) -> str:
    """Column name of a post-processed region: "ET (pp 500)"."""
    return f"{region} (pp {int(min_voxels)})"


__all__ = ["LITERATURE_ET_MIN_VOXELS", "NNUNET_ET_LABEL", "NNUNET_NCR_LABEL", "suppress_small_et",
           "suppress_small_et_regions", "et_and_ncr_labels", "pp_region_name"]
