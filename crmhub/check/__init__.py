"""`crmhub check`: a read-only preflight against the systems settings.yaml configures.

    report = run_check(load_config("settings.yaml"))
    report.ok            # False: report.lines() names each problem with its fix
    report.to_json()     # every check, passed or not

Each system's checks live in their own module (`crmhub.check.<system>`, a
generator of `Finding`s taking the connector `crmhub.app` builds), found by
name here, so the runner itself names no vendor. The connectors' SDK clients
do every call; nothing is written to any system. Which checks exist:
docs/check.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

from crmhub.channels import registry
from crmhub.check._report import Finding, Report, failed
from crmhub.check._where import Where
from crmhub.config import Config
from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.errors import AuthError, ConfigError, ConnectorError

# A preflight answers in seconds: a few quick retries of a flaky call, not the daemon's 15 minutes.
CHECK_RETRY = RetryPolicy(max_attempts=3, initial_wait=0.5, max_wait=5.0, max_total=30.0)

# What to do when a system refuses crmhub's credentials.
CREDENTIALS_FIX = {
    "salesforce": "check crms.salesforce.auth: the connected app's consumer key and secret (and, for "
                  "client_credentials, that the app's Run As user is set; for password, username and password)",
    "zendesk": "check crms.zendesk.auth: an agent's email with an active API token (Admin Center > Apps and "
               "integrations > Zendesk API), or an OAuth token",
    "hubspot": "check crms.hubspot.auth.access_token: the private app's access token (Settings > Integrations > "
               "Private apps > your app > Access token)",
}
"""A channel's fix is its module's `credentials_fix`."""


def run_check(config: Config, *, retrier: Retrier | None = None) -> Report:
    """Check every enabled CRM and channel; a system that cannot be reached is one problem, not a crash."""
    where = Where(config)
    retrier = retrier or Retrier(CHECK_RETRY)
    report = Report()
    seen: set[tuple[str, str, str]] = set()
    for system in (*config.settings.crms.enabled_names(), *config.settings.channels.enabled_names()):
        for finding in _checked(system, config, where, retrier):
            if (finding.system, finding.check, finding.problem) not in seen:  # two names for one queue: one row
                seen.add((finding.system, finding.check, finding.problem))
                report.findings.append(finding)
    return report


def _checked(system: str, config: Config, where: Where, retrier: Retrier) -> Iterator[Finding]:
    from crmhub import app  # the one place that builds connectors from settings

    if system in registry.names():  # a channel: its module builds and probes it
        channel = registry.load(system)
        build: Callable[[Config, Retrier], Any] = channel.build
        probe: Callable[[Any, Config, Where], Iterator[Finding]] = channel.check
        fix = channel.credentials_fix
    else:
        build = getattr(app, f"build_{system}")
        probe = importlib.import_module(f"crmhub.check.{system}").check
        fix = CREDENTIALS_FIX[system]
    try:
        yield from probe(build(config, retrier), config, where)
    except AuthError as exc:
        yield failed(system, "credentials", f"the credentials were refused ({exc})", fix)
    except ConfigError as exc:  # e.g. X: the token belongs to another account
        yield failed(system, "credentials", "; ".join(exc.problems), fix)
    except ConnectorError as exc:
        yield failed(system, "reachable", f"could not be checked: {exc}",
                     f"check that {system} is reachable from this host (base_url, proxy, firewall), then run "
                     "crmhub check again")


__all__ = ["Finding", "Report", "run_check"]
