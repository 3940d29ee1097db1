"""The Meta channel module (Messenger and Instagram DMs of one Page): `module.MODULE` implements the channel contract."""
