"""A broken installation, recognised from the exception it raises, as one line with the fix.

The one met in practice: a torchvision built for another torch. cegate imports torchvision only
through timm (any backbone module imports timm, whose data package imports torchvision), and
there it fails with `RuntimeError: operator torchvision::nms does not exist`, a traceback that
names neither version. The CLI (cli.py) asks `broken_install` about errors it does not own, so
every command says the same line.
"""

from __future__ import annotations

import re
from importlib import metadata

from cegate_cli.errors import InstallError

_TORCHVISION_MISMATCH = re.compile(r"operator torchvision::\w+ does not exist")
PYTORCH_INDEX = "https://download.pytorch.org/whl"


def broken_install(exc: BaseException) -> InstallError | None:
    """The one-line error for `exc` when it is a known broken installation; None otherwise."""
    if not _TORCHVISION_MISMATCH.search(str(exc)):
        return None
    torch_version, vision_version = installed("torch"), installed("torchvision")
    return InstallError(
        f"torchvision {vision_version} does not match torch {torch_version} (it was built for another torch, so its "
        f"operators are missing); install the torchvision built for torch {torch_version}, from the index torch came "
        f"from: {matching_install(torch_version)}"
    )


def installed(package: str) -> str:
    """The installed distribution's version, read without importing it (importing is what fails)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def matching_install(torch_version: str) -> str:
    """A pip command that installs the torchvision for `torch_version` and keeps that torch.

    torchvision 0.(m + 15) is built for torch 2.m; pinning torch too stops pip from replacing it
    with the torch another torchvision release asks for. A local suffix (`+cu130`, `+cpu`) names
    the PyTorch index the build came from.
    """
    release, _, local = torch_version.partition("+")
    parts = release.split(".")
    vision = f"torchvision==0.{int(parts[1]) + 15}.*" if len(parts) >= 2 and parts[0] == "2" and parts[1].isdigit() else "torchvision"
    index = f" --index-url {PYTORCH_INDEX}/{local}" if local else ""
    return f'pip install "torch=={torch_version}" "{vision}"{index}'
