"""`cegate pull`: download a backbone into the Hugging Face cache, for later offline use.

The result (where the files are, the commit they came from, the weights' sha256) goes to stdout;
huggingface_hub's download progress goes to stderr.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cegate_cli.commands.console import stdout
from cegate_cli.commands.options import JsonOpt, RevisionOpt, TokenOpt


def register(app: typer.Typer) -> None:
    @app.command(name="pull")
    def pull_command(
        spec: Annotated[
            str,
            typer.Argument(
                help="Backbone: hf-hub:ORG/NAME[@REV], a local folder, or an alias "
                "(galileo-nano|tiny|base, dinov2-small|base|large, prithvi-eo-2-300m|600m|tiny, clay-v1, tiny).",
                show_default=False,
            ),
        ],
        revision: RevisionOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Download a backbone into the Hugging Face cache and print where it is."""
        from cegate_cli.backbone.hub import pull_backbone

        source = pull_backbone(spec, revision=revision, token=token)
        if as_json:
            stdout.print(json.dumps(source.to_dict(), indent=2), markup=False)
            return
        rows = [
            ("backbone", source.spec),
            ("kind", source.kind),
            ("repo", source.repo_id or "-"),
            ("revision", source.revision or "-"),
            ("folder", str(source.local_dir) if source.local_dir else "-"),
            ("weights", str(source.weights_path) if source.weights_path else "- (random initialisation, no file)"),
            ("sha256", source.weights_sha256 or "-"),
        ]
        for key, value in rows:
            stdout.print(f"{key + ':':<10}{value}", markup=False)
