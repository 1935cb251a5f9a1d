"""``synth impute``: write the absent modality files of each case, synthesised by M2DN, in the
case's original geometry, so that ``nnUNetv2_predict`` with any trainer runs on the output.

Per case: absent channels become all-zero images in a scratch folder (as ``nnunet_prism
predict`` does), nnU-Net's own preprocessor (transpose, crop to nonzero, normalise, resample)
prepares the case exactly as for training, M2DN synthesises the absent channels slice by slice,
and the export inverts nnU-Net's preprocessing (resample back with the configuration's data
resampling, uncrop into the full grid, transpose back), sets voxels outside the present
modalities' nonzero mask to 0, and writes with the spacing, origin and direction of a present
file of the case.

Intensity space written: the absent modality's own intensities are unknown, so z-scored
syntheses (ZScore/CT normalisation) are mapped back with the dataset's foreground intensity
mean and std of that channel (plans' ``foreground_intensity_properties_per_channel``): x * std
+ mean. nnU-Net's per-case z-scoring of the written file undoes any affine map, so the network
sees the synthesis, not these statistics. Other schemes are written in normalised space.
Present files are copied byte for byte; the input folder is never modified; a JSON record
(``m2dn_imputation.json``) beside the files names what was synthesised.
"""
from __future__ import annotations

import shutil
import tempfile
import json
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import SimpleITK as sitk

from nnunet_prism.availability import image_has_signal
from nnunet_prism.inference.absent_modalities import group_case_files
from nnunet_prism.modalities import ModalityError
from nnunet_prism.m2dn.inference import synthesise_volume
from nnunet_prism.m2dn.training import load_model

RECORD_FILE = "m2dn_imputation.json"
AFFINE_SCHEMES = {"ZScoreNormalization", "CTNormalization"}


def invert_normalisation(volume: np.ndarray, scheme: str, properties: dict) -> tuple:
    """Normalised (D, H, W) -> (intensities, description of the space written)."""
    if scheme in AFFINE_SCHEMES:
        mean, std = float(properties["mean"]), float(properties["std"])
        return volume * std + mean, f"{scheme} inverted with dataset foreground mean {mean:.4g}, std {std:.4g}"
    return volume, f"nnU-Net normalised ({scheme}), not inverted"


def _complete_case(case: str, files: Dict[int, Path], num_channels: int, scratch: Path, ending: str):
    """Present mask (M,) bool and the M channel files nnU-Net's preprocessor reads: present ones
    as given, absent ones as all-zero images on the grid of a present file (in ``scratch``)."""
    present = np.array([c in files and image_has_signal(files[c]) for c in range(num_channels)])
    if not present.any():
        raise ModalityError(f"case '{case}': every modality file is missing or all zero "
                            f"({', '.join(p.name for p in files.values())}); nothing to synthesise from")
    reference = sitk.ReadImage(str(files[int(np.flatnonzero(present)[0])]))
    paths = []
    for c in range(num_channels):
        if present[c]:
            image = sitk.ReadImage(str(files[c]))
            if image.GetSize() != reference.GetSize():
                raise ModalityError(f"case '{case}': {files[c].name} has size {image.GetSize()}, "
                                    f"other modalities {reference.GetSize()}")
            paths.append(str(files[c]))
        else:
            zero = sitk.Image(reference.GetSize(), sitk.sitkFloat32)
            zero.CopyInformation(reference)
            paths.append(str(scratch / f"{case}_{c:04d}{ending}"))
            sitk.WriteImage(zero, paths[-1])
    return present, paths, reference


def _export_channel(volume: np.ndarray, properties: dict, plans_manager, configuration_manager) -> np.ndarray:
    """Preprocessed-space (D', H', W') -> original array order (shape_before_cropping, transposed back)."""
    from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image

    spacing_transposed = [properties["spacing"][i] for i in plans_manager.transpose_forward]
    target = properties["shape_after_cropping_and_before_resampling"]
    current = configuration_manager.spacing if len(configuration_manager.spacing) == len(target) \
        else [spacing_transposed[0], *configuration_manager.spacing]
    resampled = configuration_manager.resampling_fn_data(volume[None].astype(np.float32), target, current,
                                                         spacing_transposed)[0]
    full = np.zeros(properties["shape_before_cropping"], dtype=np.float32)
    full = insert_crop_into_image(full, np.asarray(resampled, dtype=np.float32), properties["bbox_used_for_cropping"])
    return np.asarray(full).transpose(plans_manager.transpose_backward)


def impute_folder(input_folder, output_folder, checkpoint: Path, num_steps: int = 10, seed: int = 0,
                  device: str = "cpu", batch_size: int = 32, progress: Callable[[str], None] = print) -> Dict:
    """Impute every case of ``input_folder`` into ``output_folder``; returns the JSON record."""
    from nnunetv2.preprocessing.cropping.cropping import create_nonzero_mask
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    input_folder, output_folder = Path(input_folder).resolve(), Path(output_folder).resolve()
    if input_folder == output_folder:
        raise ModalityError(f"output folder {output_folder} is the input folder; impute never modifies its input")
    network, diffusion, config = load_model(checkpoint, device)
    root = Path(checkpoint).resolve().parent.parent
    plans_manager = PlansManager(json.loads((root / "plans.json").read_text()))
    dataset_json = json.loads((root / "dataset.json").read_text())
    configuration_manager = plans_manager.get_configuration(config["configuration"])
    reader_name = plans_manager.image_reader_writer_class.__name__
    if "SimpleITK" not in reader_name:
        raise ModalityError(f"impute writes images with SimpleITK; this dataset is read with {reader_name}")
    names, ending = config["modalities"], dataset_json["file_ending"]
    cases = group_case_files(input_folder, ending, len(names))
    output_folder.mkdir(parents=True, exist_ok=True)
    record = {"model": str(Path(checkpoint).resolve()), "num_steps": num_steps, "seed": seed,
              "configuration": config["configuration"], "cases": {}}
    preprocessor = configuration_manager.preprocessor_class(verbose=False)
    for case, files in cases.items():
        with tempfile.TemporaryDirectory(prefix="nnunet_prism_impute_") as scratch:
            present, image_files, reference = _complete_case(case, files, len(names), Path(scratch), ending)
            entry = {"present": [names[c] for c in np.flatnonzero(present)], "synthesised": [], "intensity_space": {}}
            for c in np.flatnonzero(present):
                shutil.copyfile(files[c], output_folder / f"{case}_{c:04d}{ending}")
            if not present.all():
                data, seg, properties = preprocessor.run_case(image_files, None, plans_manager,
                                                              configuration_manager, dataset_json)
                synth = synthesise_volume(network, diffusion, data, present, num_steps, seed, batch_size,
                                          np.asarray(seg[0]) >= 0, device)
                raw_present, _ = plans_manager.image_reader_writer_class().read_images(
                    [str(files[c]) for c in np.flatnonzero(present)])
                brain = create_nonzero_mask(raw_present)
                for c in np.flatnonzero(~present):
                    scheme = configuration_manager.normalization_schemes[c]
                    props = plans_manager.foreground_intensity_properties_per_channel.get(str(c), {})
                    values, space = invert_normalisation(synth[c], scheme, props)
                    array = _export_channel(values, properties, plans_manager, configuration_manager) * brain
                    image = sitk.GetImageFromArray(array.astype(np.float32))
                    image.CopyInformation(reference)
                    sitk.WriteImage(image, str(output_folder / f"{case}_{c:04d}{ending}"))
                    entry["synthesised"].append(names[c])
                    entry["intensity_space"][names[c]] = space
        record["cases"][case] = entry
        progress(f"{case}: present {'+'.join(entry['present'])}" +
                 (f", synthesised {'+'.join(entry['synthesised'])}" if entry["synthesised"] else ", nothing to synthesise"))
    (output_folder / RECORD_FILE).write_text(json.dumps(record, indent=2))
    return record
