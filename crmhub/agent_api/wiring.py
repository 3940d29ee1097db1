"""The agents' API built from settings: secrets resolved, suggestions decided through `crmhub.ops.links`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI
from sqlalchemy.orm import Session

from crmhub.agent_api.auth import AgentAuth, SalesforceApp, ZendeskApp
from crmhub.agent_api.pages import default_ancestors
from crmhub.agent_api.routes import create_agent_app
from crmhub.agent_api.sessions import Sessions
from crmhub.config import Config
from crmhub.ops import links
from crmhub.store import StateStore
from crmhub.store.linklog import Evidence
from crmhub.sync.identity import IdentityPolicy


def agent_app(config: Config, store: StateStore, *, clock: Callable[[], datetime], policy: IdentityPolicy,
              on_reply: Callable[[], None]) -> FastAPI:
    settings = config.settings
    api = settings.agent_api
    crms = settings.crms.enabled_names()

    def secret(path: str) -> str:
        return config.secret(f"agent_api.{path}").get_secret_value()

    zendesk = None
    if api.zendesk is not None and settings.crms.zendesk is not None:
        subdomain = settings.crms.zendesk.subdomain
        zendesk = ZendeskApp(secret("zendesk.public_key"), subdomain,
                             f"https://{subdomain}.zendesk.com/api/v2/apps/installations/"
                             f"{api.zendesk.installation_id}.json")
    salesforce = (SalesforceApp(secret("salesforce.consumer_secret"), api.salesforce.organization_id)
                  if api.salesforce is not None else None)
    hooks = settings.webhooks
    auth = AgentAuth(sessions=Sessions(secret("session_secret") if api.session_secret else None, api.session_ttl),
                     clock=clock, ops_token=secret("token") if api.token else None, zendesk=zendesk,
                     hubspot_secret=secret("hubspot.client_secret") if api.hubspot is not None else None,
                     salesforce=salesforce, public_url=str(hooks.public_url) if hooks.public_url else None)

    def confirm(session: Session, suggestion_id: int, actor: str) -> str:
        return links.confirm(session, suggestion_id, policy=policy, crms=crms, now=clock(), by=actor,
                             evidence=Evidence.AGENT)

    def reject(session: Session, suggestion_id: int, actor: str) -> str:
        return links.reject(session, suggestion_id, now=clock(), by=actor)

    ancestors = list(api.frame_ancestors) or default_ancestors(
        settings.crms.zendesk.subdomain if api.zendesk is not None and settings.crms.zendesk is not None else None,
        salesforce=api.salesforce is not None)
    return create_agent_app(store, auth, confirm=confirm, reject=reject, crms=crms, on_reply=on_reply,
                            frame_ancestors=ancestors)
