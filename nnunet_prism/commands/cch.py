"""``nnunet_prism cch``: which teacher is worth distilling from (cross-modal complementarity
criterion, Xie, Xu, Sanguinetti, arXiv 2510.13182): distillation T -> S helps when
I(H_T; H_S) > I(H_S; Y).

On a trained multi-encoder model (nnUNetTrainerMissingModality, nnUNetTrainerPRISM) and a fold:
representations of every modality alone and of the fused model at voxels sampled from the fold's
validation cases (``nnunet_prism.cch.representations``), MI for every teacher/student pair,
printed and written to ``-o`` as cch_table.csv and cch_heatmap.png. The CSV is what PRISM's
``cch_table`` hyperparameter reads.

``nnunet_prism cch --gaussian -o OUT`` runs the paper's joint Gaussian experiment instead
(``nnunet_prism.cch.gaussian_experiment``).
"""
from pathlib import Path

from nnunet_prism.errors import SetupError


def add_arguments(parser):
    parser.add_argument("-d", "--dataset", help="dataset name or id (model mode)")
    parser.add_argument("-c", "--configuration", help="e.g. 3d_fullres (model mode)")
    parser.add_argument("-tr", "--trainer", default="nnUNetTrainerPRISM")
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("-f", "--fold", type=int, default=0, help="model fold; its validation cases are sampled")
    parser.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("-device", "--device", default="cuda", choices=["cuda", "cpu", "mps"])
    parser.add_argument("--representation", default="features", choices=["features", "logits"],
                        help="full-resolution decoder features (default) or logits")
    parser.add_argument("--estimator", default="ksg", choices=["ksg", "gaussian"],
                        help="KSG / Ross k-NN (default) or Gaussian closed form")
    parser.add_argument("--max-samples", type=int, default=2000, help="voxels per pair, class-balanced")
    parser.add_argument("--pca-dim", type=int, default=8, help="PCA dimensions per representation (0: none)")
    parser.add_argument("-k", "--neighbours", type=int, default=3, help="k of the k-NN estimators")
    parser.add_argument("--patches-per-case", type=int, default=2)
    parser.add_argument("--voxels-per-class", type=int, default=400, help="per patch and label")
    parser.add_argument("--max-cases", type=int, default=None, help="use at most this many validation cases")
    parser.add_argument("--seed", type=int, default=0)
    g = parser.add_argument_group("joint Gaussian experiment (--gaussian)")
    g.add_argument("--gaussian", action="store_true", help="run the paper's joint Gaussian experiment instead")
    g.add_argument("--n", type=int, default=10000, help="training samples (paper: 10000)")
    g.add_argument("--dim", type=int, default=100, help="dimension p of each modality (paper: 100)")
    g.add_argument("--repeats", type=int, default=5)
    g.add_argument("--label-share", type=float, default=0.0, help="part of the label noise the teacher sees")


def mi_options(args):
    from nnunet_prism.cch.estimators import MIOptions
    if args.neighbours < 1 or args.max_samples < 10:
        raise SetupError("-k must be >= 1 and --max-samples >= 10")
    return MIOptions(k=args.neighbours, max_samples=args.max_samples, pca_dim=args.pca_dim or None, seed=args.seed)


def run_gaussian(args):
    from nnunet_prism.cch.gaussian_experiment import ExperimentConfig, run_experiment, write_outputs

    if args.n <= args.dim + 1:
        raise SetupError(f"--n ({args.n}) must exceed --dim + 1 ({args.dim + 1})")
    config = ExperimentConfig(n=args.n, p=args.dim, repeats=args.repeats, label_share=args.label_share,
                              mi_options=mi_options(args), seed=args.seed)
    files = write_outputs(run_experiment(config), config, Path(args.output))
    print(files["md"].read_text())
    for kind, path in files.items():
        print(f"{kind}: {path}")


def run(args):
    if args.gaussian:
        return run_gaussian(args)
    if not args.dataset or not args.configuration:
        raise SetupError("give -d DATASET and -c CONFIGURATION (or --gaussian)")
    import numpy as np
    import torch
    from nnunetv2.paths import nnUNet_preprocessed

    from nnunet_prism.cch.criterion import cch_table, format_table, plot_table, write_table
    from nnunet_prism.cch.representations import extract_representations
    from nnunet_prism.inference.evaluation_cases import validation_cases
    from nnunet_prism.inference.model_loading import load_predictor, model_folder
    from nnunet_prism.modalities import modality_names
    from nnunet_prism.networks.interfaces import FusedAndUnimodal

    options = mi_options(args)
    folder = model_folder(args.dataset, args.trainer, args.plans, args.configuration)
    predictor = load_predictor(folder, args.fold, args.checkpoint, args.device, use_mirroring=False)
    network = predictor.network
    if not isinstance(network, FusedAndUnimodal):
        raise SetupError(f"{args.trainer} has no multi-encoder network (forward_all); the CCH needs "
                         f"per-modality representations (use nnUNetTrainerMissingModality or nnUNetTrainerPRISM)")
    device = torch.device(args.device)
    network.to(device)
    dataset_name = predictor.plans_manager.dataset_name
    cases = validation_cases(dataset_name, args.fold, predictor.dataset_json)[:args.max_cases]
    names = modality_names(predictor.dataset_json)
    preprocessed = Path(str(nnUNet_preprocessed)) / dataset_name / predictor.configuration_manager.data_identifier
    reps = extract_representations(network, preprocessed, [c.name for c in cases],
                                   np.stack([c.availability for c in cases]),
                                   predictor.configuration_manager.patch_size, names, device,
                                   args.representation, args.patches_per_case, args.voxels_per_class, args.seed)
    rows = cch_table(reps, args.estimator, options)  # bad inputs: MIError, a user error (one line)
    output = Path(args.output)
    title = (f"{args.trainer} {dataset_name} {args.configuration} fold {args.fold}: "
             f"{args.representation}, {args.estimator}, {len(cases)} cases, {len(reps.labels)} voxels")
    csv_path = write_table(rows, output / "cch_table.csv")
    png_path = plot_table(rows, output / "cch_heatmap.png", title)
    print(title)
    print(format_table(rows))
    print(f"csv: {csv_path}\npng: {png_path}")
