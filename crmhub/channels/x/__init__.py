"""The X channel module (mentions, direct messages and our own replies.): `module.MODULE` implements the channel contract."""
