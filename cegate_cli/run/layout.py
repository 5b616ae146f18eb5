"""The names in a run folder: what `adapt` leaves and `predict`, `evaluate` and `inspect` read.

    run/
      run.json                  everything needed to rebuild the model and explain it
      config.yaml               the options of `cegate adapt` that made it (`--config` re-makes the run)
      adapter.safetensors       trained weights only (best validation step), never the backbone
      adapter_last.safetensors  the same at the last step
      state/trainer.safetensors what --resume needs: tensors ...
      state/trainer.json        ... and the rest (cegate_cli.run.state; never a pickle)
      .cegate.lock              held by the one `adapt` writing the folder (cegate_cli.run.lock)

Every file is written to a temporary name and renamed, so an interrupted run never leaves a
half-written file under a final name. run.json and both adapter files carry the same random
run id, so weights copied in from another run are refused instead of silently used.

Only names live here (no torch), so every module of `cegate_cli.run` agrees on them.
"""

from __future__ import annotations

RUN_FORMAT = "cegate-run/1"
RUN_JSON = "run.json"
ADAPTER_BEST = "adapter.safetensors"
ADAPTER_LAST = "adapter_last.safetensors"
STATE_DIR = "state"
CONFIG_YAML = "config.yaml"

REPLACED_DIR = ".replaced-run"
"""Where `--overwrite` keeps the old run until the new one is complete."""
RUN_FILES = (RUN_JSON, ADAPTER_BEST, ADAPTER_LAST, STATE_DIR, CONFIG_YAML)
"""Everything a run consists of: what `--overwrite` sets aside and puts back."""
