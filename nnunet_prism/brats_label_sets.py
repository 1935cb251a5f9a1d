"""BraTS releases and tasks as data: file names, label values, nnU-Net regions, evaluation groups.

One row of ``LAYOUTS`` per label set; the code that converts, exports (``dataset_conversion``) and
scores (``nnunet_prism.evaluation``: lesion-wise parameters, ``--metrics brats2025``) reads these
rows and has no branch per release. A dataset converted by ``convert-brats`` names its row in
dataset.json (``brats_layout``). nnU-Net side, for every set: 0 background, 1 edema (SNFH / ED),
2 non-enhancing core (NCR / NETC), 3 enhancing tumour (ET), 4 the set's extra class (RC, CC), so
that ET post-processing and the WT/TC/ET tables work alike on all of them.

========  ==========================================  ======================================
set       files and labels                            source of the label definition
========  ==========================================  ======================================
2020      ``<case>_{flair,t1,t1ce,t2,seg}``;          BraTS 2018-2021 (Menze et al. 2015,
          1 NCR/NET, 2 ED, 4 ET                       Bakas et al. 2017/2018, Baid et al. 2021)
2023      ``<case>-{t2f,t1n,t1c,t2w,seg}``;           BraTS 2023 adult glioma (BraTS-GLI), SSA
          1 NCR, 2 ED (SNFH), 3 ET
2024      as 2023; 1 NETC, 2 SNFH, 3 ET, 4 RC         BraTS 2024-2025 post-treatment glioma:
          (resection cavity)                          de Verdier et al., arXiv:2405.18368
met       ``BraTS-MET-*``; 1 NETC, 2 SNFH, 3 ET,      BraTS-MET 2023 (Moawad et al.,
          4 RC in the 2025 release                    arXiv:2306.00838) and the 2025 release
ped       ``BraTS-PED-*``; 1 ET, 2 NETC, 3 CC         BraTS-PEDs 2024 (Kazerooni et al.,
          (cystic component), 4 ED                    arXiv:2404.15009)
men       ``BraTS-MEN-*``; 1 NETC, 2 SNFH, 3 ET       BraTS-MEN pre-operative meningioma
                                                      (LaBella et al., arXiv:2305.07642)
========  ==========================================  ======================================

``groups``: the label groups the official BraTS 2025 evaluation (``brats-evaluation``, on
panoptica) scores per task, in BraTS values (its bundled configs ``gli``, ``mets``, ``ped``,
``MenPre``). ``lesion_dilation`` and ``lesion_min_volume`` (mm^3): the BraTS 2023 lesion-wise
parameters per task (BraTS-2023-Metrics: GLI/SSA/PED 3 and 50, MEN 1 and 50, MET 1 and 2).
Not covered: BraTS-MEN-RT (one T1c image, one label) and GoAT (no training labels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from nnunet_prism.errors import NnunetPrismError


class LabelSetError(NnunetPrismError, ValueError):
    """A BraTS release or task name that no row of ``LAYOUTS`` has."""


#: file extensions accepted in a source folder (nnU-Net output is always .nii.gz)
EXTENSIONS = (".nii.gz", ".nii")

#: nnU-Net region name -> nnU-Net labels (the region's members); names as in nnU-Net's BraTS example
WT, TC, ET = "whole tumor", "tumor core", "enhancing tumor"
RC, CC = "resection cavity", "cystic component"


@dataclass(frozen=True)
class BratsLayout:
    name: str                       # "2020" (covers 2018-2021), "2023", "2024", "met", "ped", "men"
    separator: str                  # between case id and file key
    image_keys: Tuple[str, ...]     # file keys in channel order FLAIR, T1, T1c, T2
    seg_key: str
    to_nnunet: Dict[int, int]       # BraTS label -> nnU-Net label
    brats_names: Dict[int, str]     # BraTS label -> its name in the release
    regions: Tuple[Tuple[str, Tuple[int, ...], int], ...] = (
        (WT, (1, 2, 3), 1), (TC, (2, 3), 2), (ET, (3,), 3))  # (name, nnU-Net labels, class written), in order
    plain_labels: Tuple[Tuple[str, int], ...] = (("edema", 1), ("necrosis", 2), ("enhancing", 3))
    groups: Tuple[Tuple[str, Tuple[int, ...]], ...] = ()    # official evaluation groups, BraTS values
    lesion_dilation: int = 3
    lesion_min_volume: float = 50.0
    case_prefix: str = ""           # case ids of this task start with it (auto detection)
    title: str = ""

    @property
    def brats_labels(self) -> Tuple[int, ...]:
        return tuple(sorted(self.to_nnunet))

    @property
    def naming(self) -> str:
        """The file-name family: "2020" (``_flair``) or "2023" (``-t2f``, every later set)."""
        return "2020" if self.separator == "_" else "2023"

    def file_name(self, case_id: str, key: str, extension: str = ".nii.gz") -> str:
        return f"{case_id}{self.separator}{key}{extension}"

    def key_of(self, file_name: str) -> Optional[str]:
        """The file key (``flair``, ``seg``, ...) of ``file_name`` in this layout, or None."""
        for key in self.image_keys + (self.seg_key,):
            if any(file_name.endswith(f"{self.separator}{key}{ext}") for ext in EXTENSIONS):
                return key
        return None

    def nnunet_groups(self) -> Dict[str, Tuple[int, ...]]:
        """The evaluation groups in nnU-Net label values."""
        return {name: tuple(sorted(self.to_nnunet[v] for v in values)) for name, values in self.groups}


_NAMES_2023 = ("-", ("t2f", "t1n", "t1c", "t2w"), "seg")
_GLIOMA_2024 = {0: 0, 1: 2, 2: 1, 3: 3, 4: 4}
_RC_REGIONS = ((WT, (1, 2, 3), 1), (TC, (2, 3), 2), (ET, (3,), 3), (RC, (4,), 4))
_RC_PLAIN = (("edema", 1), ("necrosis", 2), ("enhancing", 3), ("resection cavity", 4))

LAYOUT_2020 = BratsLayout("2020", "_", ("flair", "t1", "t1ce", "t2"), "seg", {0: 0, 1: 2, 2: 1, 4: 3},
                          {1: "necrotic and non-enhancing tumour core (NCR/NET)", 2: "peritumoral edema (ED)",
                           4: "enhancing tumour (ET)"},
                          groups=(("et", (4,)), ("tc", (1, 4)), ("wt", (1, 2, 4))),
                          title="BraTS 2018-2021 glioma")
LAYOUT_2023 = BratsLayout("2023", *_NAMES_2023, {0: 0, 1: 2, 2: 1, 3: 3},
                          {1: "necrotic tumour core (NCR)", 2: "peritumoral edema / SNFH (ED)",
                           3: "enhancing tumour (ET)"},
                          groups=(("et", (3,)), ("netc", (1,)), ("snfh", (2,)), ("tc", (1, 3)), ("wt", (1, 2, 3))),
                          case_prefix="BraTS-GLI", title="BraTS 2023 adult glioma")
def _post_treatment_names(label_3: str) -> dict:
    """The label names of the 2024-2025 glioma and the metastasis sets (same labels; label 3 is
    worded "enhancing tissue" in the glioma set, "enhancing tumour" in the metastasis set)."""
    return {1: "non-enhancing tumour core (NETC)", 2: "surrounding non-enhancing FLAIR hyperintensity (SNFH)",
            3: label_3, 4: "resection cavity (RC)"}


LAYOUT_2024 = BratsLayout("2024", *_NAMES_2023, dict(_GLIOMA_2024),
                          _post_treatment_names("enhancing tissue (ET)"),
                          regions=_RC_REGIONS, plain_labels=_RC_PLAIN,
                          groups=(("et", (3,)), ("netc", (1,)), ("snfh", (2,)), ("rc", (4,)), ("tc", (1, 3)),
                                  ("wt", (1, 2, 3))),
                          case_prefix="BraTS-GLI", title="BraTS 2024-2025 post-treatment glioma")
LAYOUT_MET = BratsLayout("met", *_NAMES_2023, dict(_GLIOMA_2024),
                         _post_treatment_names("enhancing tumour (ET)"),
                         regions=_RC_REGIONS, plain_labels=_RC_PLAIN,
                         groups=(("et", (3,)), ("rc", (4,)), ("tc", (1, 3)), ("wt", (1, 2, 3))),
                         lesion_dilation=1, lesion_min_volume=2.0, case_prefix="BraTS-MET",
                         title="BraTS-MET brain metastases")
LAYOUT_PED = BratsLayout("ped", *_NAMES_2023, {0: 0, 1: 3, 2: 2, 3: 4, 4: 1},
                         {1: "enhancing tumour (ET)", 2: "non-enhancing tumour (NETC)", 3: "cystic component (CC)",
                          4: "peritumoral edema (ED)"},
                         regions=((WT, (1, 2, 3, 4), 1), (TC, (2, 3, 4), 2), (CC, (4,), 4), (ET, (3,), 3)),
                         plain_labels=(("edema", 1), ("non-enhancing tumor", 2), ("enhancing", 3),
                                       ("cystic component", 4)),
                         groups=(("et", (1,)), ("netc", (2,)), ("cc", (3,)), ("ed", (4,)), ("tc", (1, 2, 3)),
                                 ("wt", (1, 2, 3, 4))),
                         case_prefix="BraTS-PED", title="BraTS-PEDs paediatric tumours")
LAYOUT_MEN = BratsLayout("men", *_NAMES_2023, {0: 0, 1: 2, 2: 1, 3: 3},
                         {1: "non-enhancing tumour core (NETC)", 2: "surrounding FLAIR hyperintensity (SNFH)",
                          3: "enhancing tumour (ET)"},
                         groups=(("et", (3,)), ("tc", (1, 3)), ("wt", (1, 2, 3))),
                         lesion_dilation=1, case_prefix="BraTS-MEN", title="BraTS-MEN pre-operative meningioma")

LAYOUTS = {layout.name: layout for layout in (LAYOUT_2020, LAYOUT_2023, LAYOUT_2024, LAYOUT_MET, LAYOUT_PED,
                                               LAYOUT_MEN)}
_ALIASES = {"2018": "2020", "2019": "2020", "2021": "2020", "2025": "2024", "gli": "2024"}
#: what ``--layout`` accepts
LAYOUT_CHOICES = ["2018", "2019", "2020", "2021", "2023", "2024", "2025", "met", "ped", "men"]


def get_layout(name: str) -> BratsLayout:
    """Layout by release or task name ("2018".."2021" are the 2020 layout, "2025" the 2024 one)."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in LAYOUTS:
        raise LabelSetError(f"unknown BraTS layout '{name}'; use one of {', '.join(LAYOUT_CHOICES)}.")
    return LAYOUTS[key]
