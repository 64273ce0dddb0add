"""Build hook: the sdist leaves out the repository's dotfiles (hatchling always adds ``.gitignore``)."""

from __future__ import annotations

import os
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class SdistWithoutDotfiles(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        forced = build_data.get("force_include", {})
        for source in [s for s, target in forced.items() if os.path.basename(target).startswith(".")]:
            del forced[source]
