"""The prompt kind: deep visual prompt tuning (VPT, Jia et al. 2022), learnable tokens that each
block's attention sees beside the image's own tokens (layer.py).

Not in the default toolbox: `--modules` must name it (`--modules lora,adapter,earth,prompt`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cegate_cli.errors import InputError
from cegate_cli.toolbox.kinds import KindOptions, KindSpec, register_kind

MAX_TOKENS = 1024
"""Most prompt tokens per block: several times what VPT found useful, and each one costs every
query of the block another key."""


@dataclass(frozen=True)
class PromptOptions(KindOptions):
    tokens: int = field(
        default=10,
        metadata={
            "help": "Learnable prompt tokens each block's attention sees (deep visual prompt tuning; with prompt in --modules).",
            "flag": "--prompt-tokens",
        },
    )

    def check(self) -> None:
        if not 1 <= self.tokens <= MAX_TOKENS:
            raise InputError(f"--prompt-tokens {self.tokens}: must be from 1 to {MAX_TOKENS} (e.g. 10)")


register_kind(
    KindSpec(
        name="prompt",
        position=40,
        label="prompt (deep VPT: learnable tokens in the block's attention)",
        title="Prompt (VPT)",
        color="#9467bd",
        options=PromptOptions,
        attach=f"{__name__}.layer:attach",
        aliases=("vpt",),
        default=False,
    )
)
