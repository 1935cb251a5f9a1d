"""The 15-subset evaluation without a trained model: a plain nnU-Net network (no
``forward_subsets``) gets one forward pass per subset with the other channels zeroed, and a case
is scored only on the subsets of the modalities it really has."""
import numpy as np
import SimpleITK as sitk
import torch
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from helpers.networks import IMPORTS, PLAIN_UNET, small_plain_kwargs
from nnunet_prism.inference import subset_evaluation
from nnunet_prism.inference.evaluation_cases import EvaluationCase, folder_cases
from nnunet_prism.inference.subset_prediction import AllSubsetsNetwork, subset_logits
from nnunet_prism.modalities import subset_masks
from nnunet_prism.networks import SubsetEvaluable

NAMES = ["FLAIR", "T1", "T1c", "T2"]


def plain_nnunet_network():
    """nnU-Net's own PlainConvUNet (3 input channels, 2 classes), as the predictor builds it."""
    torch.manual_seed(0)
    network = get_network_from_plans(PLAIN_UNET, small_plain_kwargs(1), IMPORTS, 3, 2,
                                     deep_supervision=False)
    return network.eval()


def zeroed_except(x, mask):
    out = x.clone()
    out[:, ~mask] = 0
    return out


@torch.no_grad()
def test_plain_network_subsets_are_forwards_with_the_other_channels_zeroed():
    network = plain_nnunet_network()
    assert not isinstance(network, SubsetEvaluable)
    x = torch.randn(2, 3, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    masks = torch.as_tensor(subset_masks(3))
    wide = AllSubsetsNetwork(network, masks)(x)
    assert wide.shape == (2, 7 * 2, 16, 16, 16)
    for s, mask in enumerate(masks):
        # batched forwards: equal up to the convolution's summation order
        torch.testing.assert_close(wide[:, 2 * s:2 * s + 2], network(zeroed_except(x, mask)), rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_plain_network_subsets_in_chunks_when_one_forward_would_be_too_large(monkeypatch):
    from nnunet_prism.inference import subset_prediction

    network = plain_nnunet_network()
    calls = []
    network.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    x = torch.randn(2, 3, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    masks = torch.as_tensor(subset_masks(3))
    whole = AllSubsetsNetwork(network, masks)(x)
    assert calls == [7 * 2], "all 7 subsets of both samples in one forward"
    monkeypatch.setattr(subset_prediction, "MAX_VOXELS_PER_FORWARD", 3 * 2 * 16 ** 3)  # 3 subsets per forward
    calls.clear()
    chunked = AllSubsetsNetwork(network, masks)(x)
    assert calls == [3 * 2, 3 * 2, 1 * 2]
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-5)


class StubPredictor:
    """The two things ``subset_logits`` uses of nnU-Net's predictor: the network it holds and the
    sliding-window call (here one forward of the whole case)."""

    def __init__(self, network):
        self.network = network
        self.label_manager = type("LabelManager", (), {"num_segmentation_heads": 2})()
        self.heads_seen = []

    def predict_logits_from_preprocessed_data(self, data):
        self.heads_seen.append(self.label_manager.num_segmentation_heads)
        return self.network(data[None])[0]


@torch.no_grad()
def test_subset_logits_of_a_plain_network_and_the_predictor_is_restored():
    network = plain_nnunet_network()
    predictor = StubPredictor(network)
    label_manager = predictor.label_manager
    data = torch.randn(3, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    masks = torch.as_tensor(subset_masks(3))[[0, 4, 6]]  # {0}, {0, 2}, {0, 1, 2} in all_subsets order
    logits = subset_logits(predictor, data, masks)
    assert predictor.heads_seen == [3 * 2], "the wide label manager during prediction"
    assert predictor.network is network and predictor.label_manager is label_manager
    assert len(logits) == 3
    for out, mask in zip(logits, masks):
        torch.testing.assert_close(out, network(zeroed_except(data[None], mask))[0], rtol=1e-4, atol=1e-5)


# -- which subsets a case is scored on ------------------------------------------------------------
def _write(path, array):
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


class _Preprocessor:
    def __init__(self, verbose=False):
        pass

    def run_case(self, image_files, seg_file, plans_manager, configuration_manager, dataset_json):
        return np.zeros((len(image_files), 4, 4, 4), dtype=np.float32), None, {"files": image_files}


def test_evaluation_skips_the_subsets_with_a_modality_the_case_lacks(tmp_path, monkeypatch):
    dataset_json = {"channel_names": {str(i): n for i, n in enumerate(NAMES)},
                    "labels": {"background": 0, "tumour": 1}, "file_ending": ".nii.gz"}
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    signal = np.ones((4, 4, 4), dtype=np.float32)
    for case, absent in (("full", ()), ("partial", (1, 3))):  # partial: T1 and T2 all zero
        for c in range(4):
            _write(images / f"{case}_{c:04d}.nii.gz", 0 * signal if c in absent else signal)
        _write(labels / f"{case}.nii.gz", np.zeros((4, 4, 4), dtype=np.uint8))
    cases = folder_cases(images, labels, dataset_json)
    assert [(c.name, c.availability.tolist()) for c in cases] == [
        ("full", [True] * 4), ("partial", [True, False, True, False])]
    # a hand-made availability: no FLAIR
    cases.append(EvaluationCase("no_flair", cases[0].image_files, cases[0].label_file,
                                np.array([False, True, True, True])))

    predicted = []

    def fake_segmentations(predictor, data, properties, masks):
        predicted.append(np.asarray(masks).tolist())
        return [np.zeros((4, 4, 4), dtype=np.uint8) for _ in masks]

    monkeypatch.setattr(subset_evaluation, "subset_segmentations", fake_segmentations)
    predictor = type("Predictor", (), {})()
    predictor.dataset_json = dataset_json
    predictor.plans_manager = type("Plans", (), {"plans": None, "image_reader_writer_class": SimpleITKIO})()
    predictor.configuration_manager = type("Configuration", (), {"preprocessor_class": _Preprocessor})()
    results = subset_evaluation.evaluate_subsets(predictor, cases, progress=False)

    masks = subset_masks(4).tolist()
    assert predicted[0] == masks, "a complete case: all 15 subsets in one prediction"
    assert predicted[1] == [[True, False, False, False], [False, False, True, False], [True, False, True, False]]
    assert predicted[2] == [m for m in masks if not m[0]]
    scored = {name: results.cases(subset) for name, subset in zip(results.subset_names, results.subsets)}
    assert scored == {
        "FLAIR": ["full", "partial"], "T1": ["full", "no_flair"], "T1c": ["full", "partial", "no_flair"],
        "T2": ["full", "no_flair"], "FLAIR+T1": ["full"], "FLAIR+T1c": ["full", "partial"], "FLAIR+T2": ["full"],
        "T1+T1c": ["full", "no_flair"], "T1+T2": ["full", "no_flair"], "T1c+T2": ["full", "no_flair"],
        "FLAIR+T1+T1c": ["full"], "FLAIR+T1+T2": ["full"], "FLAIR+T1c+T2": ["full"],
        "T1+T1c+T2": ["full", "no_flair"], "FLAIR+T1+T1c+T2": ["full"]}
