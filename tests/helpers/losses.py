"""The dense (B, M, ...) student layout, kept only as a reference for the tests: the losses take
one row per present (sample, modality) pair, in the network's order (``MultiModalOutput``)."""
import torch


def pair_rows(dense, modality_mask):
    """(rows, pairs) of a dense (B, M, ...) student tensor, or of a list of them (one per
    deep-supervision level): the rows (P, ...) of the present pairs of ``modality_mask`` (B, M)
    and pairs = (samples, modalities) (P,) each, modality-major like the network's rows. The
    rows are gathered (differentiable), so gradients reach the dense tensor."""
    modalities, samples = modality_mask.to(torch.bool).T.nonzero(as_tuple=True)
    if isinstance(dense, (list, tuple)):
        return [level[samples, modalities] for level in dense], (samples, modalities)
    return dense[samples, modalities], (samples, modalities)
