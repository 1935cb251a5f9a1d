"""PRISM (published as PASSION, ACM MM 2024): multi-uni self-distillation with
preference-aware regularisation, on the multi-encoder baseline.

L = L_task + sum_{m present} (lambda1 * E^m * L_pixel^m + lambda2 * omega^m * L_proto^m)
(PASSION, ACM MM 2024, overall objective). Teacher = the fused output of the present
modalities (detached); student m = modality m alone through the same decoder. E^m starts at
1/(1-FR^m) of this fold's training cases and is updated after every epoch by
E <- E - gamma * mean RP^m; it is saved in nnU-Net's checkpoints and restored by ``--c``.
Defaults from the official code: T = 4, lambda1 = 0.5, lambda2 = 0.1, gamma = 0.01.

``preset="official"`` reproduces the official PASSION code's behaviours (each has its own switch,
see ``PRESETS``; docs/methods.md, "Paper vs official code"): pixel KL on probabilities upsampled to full
resolution with the official level weights and clamping, prototypes over the classes of every
sample of the batch, the omega gate on the batch-summed RP, the semantic loss weighted by
1/(1-FR^m), the clamped and renormalised beta updated from the pooled epoch gaps with gamma x1.5
every 100 epochs, RP-gated E^m-weighted unimodal losses; ``region_fusion_start_epoch`` is the
official warm-up (before it only the unimodal losses train; official runs use 0).
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_prism.deep_supervision import full_resolution
from nnunet_prism.losses import (DEFAULT_GAMMA, DEFAULT_LAMBDA_PIXEL, DEFAULT_LAMBDA_PROTO, DEFAULT_TEMPERATURE,
                                 PreferenceState, prism_distillation_loss)
from nnunet_prism.losses.preference import RP_STATISTICS, RULES, SCOPES, unimodal_weights
from nnunet_prism.losses.prototype import REGION_CLASSES
from nnunet_prism.modalities import missing_rates
from nnunet_prism.training.distributed import is_distributed, reduce_preference_state, sum_over_ranks
from nnunet_prism.training.hyperparameters import PRESET, Hyperparameter, HyperparameterError
from nnunet_prism.training.trainers.nnUNetTrainerMissingModality import nnUNetTrainerMissingModality


def prism_objective(out, target, coefficients: torch.Tensor, label_manager,
                    ds_weights: Optional[Sequence[float]], temperature: float, lambda1: float, lambda2: float,
                    prob_floor: Optional[float], **options) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """PASSION's distillation terms for one network output (added to L_task by the trainer).

    out: ``MultiModalOutput`` (fused teacher, student rows, features, pairs, mask (B, M));
    target: per deep-supervision level (B, 1|R(+ignore), *spatial); coefficients: E^m (M,)
    (times the CCH student mask); label_manager: nnU-Net's (regions or labels, ignore label);
    options: the official-code switches of ``prism_distillation_loss`` (upsample, class_scope,
    omega_scope, proto_coefficients, batch_sum) and ``recompute_rows`` (activation checkpointing).
    Returns the loss and the stats of ``prism_distillation_loss``.
    """
    target_full = full_resolution(target)
    if label_manager.has_regions and label_manager.has_ignore_label:
        target_full = target_full[:, :-1]
    labels = ({} if label_manager.has_regions else
              {"num_classes": label_manager.num_segmentation_heads, "ignore_label": label_manager.ignore_label})
    return prism_distillation_loss(
        out.fused, out.students, out.fused_features, out.student_features, target_full, out.modality_mask,
        coefficients, region_based=label_manager.has_regions, ds_weights=ds_weights, temperature=temperature,
        lambda_pixel=lambda1, lambda_proto=lambda2, prob_floor=prob_floor, pairs=out.pairs, **labels, **options)


class nnUNetTrainerPRISM(nnUNetTrainerMissingModality):
    HYPERPARAMETERS = {
        "temperature": Hyperparameter("float", DEFAULT_TEMPERATURE, "KL temperature T (PASSION official code)",
                                      above=0),
        "lambda1": Hyperparameter("float", DEFAULT_LAMBDA_PIXEL, "pixel-wise distillation weight (PASSION official "
                                                                 "code)", minimum=0),
        "lambda2": Hyperparameter("float", DEFAULT_LAMBDA_PROTO, "semantic (prototype) distillation weight (PASSION "
                                                                 "official code)", minimum=0),
        "gamma": Hyperparameter("float", DEFAULT_GAMMA, "step of E <- E - gamma * mean RP (PASSION official code)",
                                minimum=0),
        "coefficient_rule": Hyperparameter("choice", "paper", "`official`: the official code's clamped, renormalised "
                                                              "beta", choices=RULES),
        "kl_prob_floor": Hyperparameter("float", None, "0.005 reproduces the official code's probability clamping",
                                        nullable=True, above=0, below=0.5),
        "cch_table": Hyperparameter("str", "", "a `nnunet_prism cch` table: pixel distillation only into the "
                                               "students for which the CCH holds with the fused teacher"),
        "preset": PRESET,
        "kl_levels": Hyperparameter("choice", "native", "pixel KL per deep-supervision level at its own resolution "
                                                        "(trainer's weights); `upsampled`: probabilities upsampled "
                                                        "to full resolution, official level weights (official code)",
                                    choices=("native", "upsampled")),
        "prototype_classes": Hyperparameter("choice", "sample", "prototypes over the classes of each sample; "
                                                                "`batch`: only classes present in every sample of "
                                                                "the batch (official code)", choices=SCOPES),
        "prototype_region_classes": Hyperparameter(
            "choice", "regions", "region-based sets: one prototype per nnU-Net region (WT, TC, ET overlap); "
                                 "`disjoint`: per disjoint class the regions make, background included "
                                 "(PASSION's 1[y=k]: background, ED, NCR, ET)", choices=REGION_CLASSES),
        "omega_scope": Hyperparameter("choice", "sample", "omega from each sample's RP (paper); `batch`: from the "
                                                          "batch-summed RP (official code)", choices=SCOPES),
        "proto_data_weight": Hyperparameter("bool", False, "semantic loss times 1/(1-FR^m), the modality's data "
                                                           "weight (official code)"),
        "rp_statistic": Hyperparameter("choice", "mean_rp", "epoch RP for E^m: mean per-sample RP (paper); "
                                                            "`pooled_gap`: from the epoch's pooled gaps (official "
                                                            "code)", choices=RP_STATISTICS),
        "gamma_growth": Hyperparameter("float", 1.0, "gamma times this at every epoch that is a multiple of 100, "
                                                     "epoch 0 included (official code: 1.5)", minimum=1),
        "region_fusion_start_epoch": Hyperparameter("int", 0, "warm-up: before this epoch only the unimodal losses "
                                                              "train and E^m stays (official code; its runs use 0)",
                                                    minimum=0),
        "unimodal_preference": Hyperparameter("bool", False, "unimodal losses weighted by E^m and gated by the "
                                                             "batch omega (official code)"),
    }
    #: ``preset=official``: the official PASSION code's behaviours (an explicit value still wins)
    PRESETS = {"official": {"kl_levels": "upsampled", "kl_prob_floor": 0.005, "prototype_classes": "batch",
                            "omega_scope": "batch", "proto_data_weight": True, "coefficient_rule": "official",
                            "rp_statistic": "pooled_gap", "gamma_growth": 1.5, "region_fusion_start_epoch": 0,
                            "unimodal_preference": True}}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._preference = None
        self._pending_preference_state = None

    def method_curves(self):
        return {**super().method_curves(),
                "PRISM coefficient E^m": [self.curve_key("E", n) for n in self.modality_names],
                "PRISM mean relative preference RP^m": [self.curve_key("RP", n) for n in self.modality_names]}

    @staticmethod
    def curve_key(kind: str, modality: str) -> str:
        return f"prism_{kind}_{modality}"

    @property
    def preference(self) -> PreferenceState:
        """E^m and the epoch's RP sums; E^m_0 = 1/(1-FR^m) of this fold's training cases."""
        if self._preference is None:
            rates = missing_rates(np.stack(list(self._availability_table().values())))
            self._preference = PreferenceState(rates, rule=self.coefficient_rule, gamma=self.gamma,
                                               rp_statistic=self.rp_statistic, gamma_growth=self.gamma_growth,
                                               start_epoch=self.region_fusion_start_epoch)
            if self._pending_preference_state is not None:
                self._preference.load_state_dict(self._pending_preference_state)
        return self._preference

    def checkpoint_state(self) -> dict:
        return {"preference": self.preference.state_dict()} if self._preference is not None else {}

    def restore_checkpoint_state(self, state: dict) -> None:
        if "preference" in state:
            self._pending_preference_state = state["preference"]
            if self._preference is not None:
                self._preference.load_state_dict(state["preference"])

    @property
    def cch_students(self) -> torch.Tensor:
        """(M,) 1.0 where pixel distillation into modality m is on: the CCH (fused -> m) holds in
        ``cch_table`` (nnunet_prism.cch, arXiv 2510.13182); all ones when cch_table is empty."""
        if getattr(self, "_cch_students", None) is None:
            from nnunet_prism.cch.criterion import read_student_mask
            mask = (read_student_mask(self.cch_table, self.modality_names) if self.cch_table
                    else np.ones(len(self.modality_names), dtype=bool))
            self._cch_students = torch.as_tensor(mask, dtype=torch.float32, device=self.device)
        return self._cch_students

    def on_train_start(self):
        super().on_train_start()
        if self.cch_table:
            on = [n for n, c in zip(self.modality_names, self.cch_students.tolist()) if c]
            self.print_to_log_file(f"PRISM pixel distillation only into {on} (CCH table {self.cch_table})")
        text = ", ".join(f"{n}: {e:.3f}" for n, e in zip(self.modality_names, self.preference.E.tolist()))
        self.print_to_log_file(f"PRISM E^m at epoch {self.current_epoch}: {text}")

    @classmethod
    def check_against_dataset(cls, values: dict, modality_names) -> None:
        super().check_against_dataset(values, modality_names)
        if values["cch_table"]:
            from nnunet_prism.cch.criterion import CCHTableError, read_student_mask
            try:
                read_student_mask(values["cch_table"], modality_names)
            except (OSError, CCHTableError) as e:
                raise HyperparameterError(f"hyperparameter cch_table={values['cch_table']!r}: {e}") from None

    def official_options(self) -> dict:
        """The official-code switches in force, as options of ``prism_distillation_loss``; under
        DDP the batch-level statistics (batch classes, batch gate) are summed over the ranks."""
        batch_level = "batch" in (self.prototype_classes, self.omega_scope) or self.unimodal_preference
        return {"upsample": self.kl_levels == "upsampled", "class_scope": self.prototype_classes,
                "region_classes": self.prototype_region_classes,
                "omega_scope": self.omega_scope,
                "proto_coefficients": self.preference.fixed.to(self.device, torch.float32)
                if self.proto_data_weight else None,
                "batch_sum": sum_over_ranks if batch_level and is_distributed() else None}

    def compute_loss(self, output, inputs):
        upsample = self.kl_levels == "upsampled"
        ds_weights = self.loss.weight_factors if isinstance(self.loss, DeepSupervisionWrapper) and not upsample \
            else None
        # with activation checkpointing the distillation terms are recomputed in the backward pass, one
        # chunk of (sample, modality) pairs at a time: their softened logits and normalised features
        # (float32, full resolution) are the largest tensors of the step
        recompute_rows = self.unwrapped_network().checkpoint_rows if self.checkpointing_in_force else None
        distillation, dstats = prism_objective(output, inputs.target, self.preference.coefficients(self.device) *
                                               self.cch_students, self.label_manager, ds_weights, self.temperature,
                                               self.lambda1, self.lambda2, self.kl_prob_floor,
                                               recompute_rows=recompute_rows, **self.official_options())
        self.preference.update_batch(dstats["rp"], dstats["rp_valid"], dstats["gap"])
        # the official weighting of L_task: unimodal loss of m times E^m * (share of the batch with m)
        # and the batch gate omega^m (no gate during the warm-up); fused loss and distillation times 0
        # during the warm-up (kept in the graph, as the official code does)
        warm_up = self.current_epoch < self.region_fusion_start_epoch
        weights = (unimodal_weights(output.modality_mask, self.preference.coefficients(self.device),
                                    None if warm_up else dstats["gate"]) if self.unimodal_preference else None)
        segmentation, stats = self.segmentation_loss(output, inputs.target, weights, 0.0 if warm_up else 1.0)
        if warm_up:
            distillation = distillation * 0.0
        return segmentation + distillation, {**stats,
                                             "pixel_distillation": dstats["pixel"].cpu().numpy(),
                                             "proto_distillation": dstats["proto"].cpu().numpy()}

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        reduce_preference_state(self.preference, self.device)
        mean_rp = self.preference.end_epoch(self.gamma, epoch=self.current_epoch).tolist()
        coefficients = self.preference.E.tolist()
        for name, e, rp in zip(self.modality_names, coefficients, mean_rp):
            self.logger.log(self.curve_key("E", name), e, self.current_epoch)
            self.logger.log(self.curve_key("RP", name), rp, self.current_epoch)
        pixel = np.mean([o["pixel_distillation"] for o in train_outputs], axis=0)
        proto = np.mean([o["proto_distillation"] for o in train_outputs], axis=0)
        rows = [f"{n}: E={e:.4f} meanRP={rp:+.4f} L_pixel={p:.4f} L_proto={q:.4f}"
                for n, e, rp, p, q in zip(self.modality_names, coefficients, mean_rp, pixel, proto)]
        self.print_to_log_file("PRISM " + "; ".join(rows))
