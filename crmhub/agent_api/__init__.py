"""The agents' API: the person behind a CRM record, their cross-channel timeline, identity suggestions, replies.

Agents work inside their CRM; the plugins in `plugins/` (a Zendesk sidebar
app, a HubSpot app card, a Salesforce component) call this API, mounted on
the webhook receiver under `/agent` (settings `agent_api`). Every request is
authenticated the way the agent's CRM signs its apps' requests, or carries
the ops API token; see `crmhub.agent_api.signing` and docs/agent-api.md.
"""
