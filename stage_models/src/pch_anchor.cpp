// Anchor for the shared precompiled <torch/torch.h>.
