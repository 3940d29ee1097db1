"""Channel modules: each channel crmhub reads and replies on, behind one contract.

`crmhub.channels.registry` lists them (plain data, importable from anywhere);
`crmhub.channels.contract.ChannelModule` is what each implements;
`crmhub.channels.registry.load(name)` gives the module. How to add one: docs/channels.md.
"""

import crmhub.config  # noqa: F401,E402  # channel settings models are read into crmhub.config's: it loads them first
