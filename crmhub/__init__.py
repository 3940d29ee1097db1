"""crmhub: bridges CRMs (Salesforce, Zendesk, HubSpot) with SMS, WhatsApp, calls and X."""

__version__ = "0.1.0"
