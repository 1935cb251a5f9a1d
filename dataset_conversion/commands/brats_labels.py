"""``brats-labels``: nnU-Net predictions (0/1/2/3) -> BraTS label convention."""
from dataset_conversion.labels import brats_predictions_to_original
from nnunet_prism.brats_label_sets import LAYOUT_CHOICES


def add_arguments(parser):
    parser.add_argument("-i", "--input", required=True, help="folder of nnU-Net predictions (.nii.gz)")
    parser.add_argument("-o", "--output", required=True, help="folder for the converted files")
    parser.add_argument("--layout", required=True, choices=LAYOUT_CHOICES,
                        help="BraTS release or task the dataset was converted from (its dataset.json's brats_layout): "
                             "2018-2021 write 1/2/4, 2023 1/2/3, 2024/2025 1/2/3/4 (4 = resection cavity), "
                             "met, ped, men their own labels")
    parser.add_argument("--et-min-voxels", type=int, default=0, metavar="N",
                        help="relabel a predicted enhancing tumour of fewer than N voxels as necrosis "
                             "(RFNet/mmFormer post-processing uses 500); 0 = off")


def run(args):
    written = brats_predictions_to_original(args.input, args.output, args.layout, args.et_min_voxels)
    print(f"wrote {len(written)} label files in the BraTS {args.layout} convention to {args.output}")
    return 0
