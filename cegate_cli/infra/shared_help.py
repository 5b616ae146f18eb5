"""The help of settings that several option classes and commands share (Hub access, device).

Written once: the option classes' fields (`AdaptOptions.revision`, `TrainConfig.device`,
`MapOptions.token`, ...) carry it in their metadata (infra/option_fields.py), and the command
line's shared option aliases (commands/options.py) show the same text.
"""

from __future__ import annotations

REVISION_HELP = "Hub revision (branch, tag or commit) to pin."
TOKEN_HELP = "Hub token for gated or private repos (default: HF_TOKEN)."
OFFLINE_HELP = "Use only the local Hub cache (same as HF_HUB_OFFLINE=1)."
DEVICE_HELP = "auto, cpu or cuda."
