"""The base of every configuration model (settings.yaml's sections, channel modules' blocks)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

BASE_URL_HELP = ("Send every request to this URL instead of the vendor's (sandbox emulator, proxy). "
                 "Empty: the vendor's, or the sandbox emulator when sandbox.enabled.")


class Model(BaseModel):
    """Base of every configuration model: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # What a key under this mapping names, when it is not a plain setting
    # ("CRM", "channel"): used for "unknown CRM 'dynamics'" messages.
    keyed_by: ClassVar[str] = ""
