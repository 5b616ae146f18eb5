"""The segmentation model: a backbone with its toolbox, and the decoder head, assembled in one place."""
