"""GMD's gradient code (AAAI 2024): the decoupling of conflicting subset gradients (Eq. 5, 8, 9)
as pure functions on flattened gradients (``decoupling``), the modality subsets each step samples
(``subset_sampling``) and the backward pass that computes, reduces, decouples and writes the
gradients of a dynamic sharing network (``backward``)."""
