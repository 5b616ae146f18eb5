"""The segmentation heads' names, torch-free, so options and `--help` can list and check them
without loading the model stack; decoder.py builds each."""

DECODERS = ("unet", "linear", "linear-pixel")
