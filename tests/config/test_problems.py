"""Each bad input gives exactly one line for people: file, line, column, key path, problem, fix."""

from __future__ import annotations

import pytest

from tests.config.conftest import SETTINGS, ConfigDir

# (file, content, expected problem lines). Contents are dedented by ConfigDir.write;
# the line numbers in the expectations count from the first line of each text.
CASES: dict[str, tuple[str, str, list[str]]] = {
    "unknown key with suggestion": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio:
            account_sid: AC0123456789abcdef0123456789abcdef
            auth_token: env:TWILIO_AUTH_TOKEN
            numbers: ["+14155550100"]
            poll_evry: 30s
        """, [
        "settings.yaml:10:5: unknown key 'poll_evry' in channels.twilio (did you mean 'poll_every'?)",
    ]),
    "unknown key without a close match lists the valid keys": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
            budget: { colour: blue }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:5:15: unknown key 'colour' in crms.salesforce.budget; valid keys here: daily_reserve, "
        "requests_per_minute",
    ]),
    "wrong type": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
            batch_size: lots
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        webhooks: [8080]
        """, [
        "settings.yaml:5:17: crms.salesforce.batch_size: expected a whole number, got text 'lots'",
        "settings.yaml:8:11: webhooks: expected a mapping of keys, got a list",
    ]),
    "bad duration": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio:
            account_sid: AC0123456789abcdef0123456789abcdef
            auth_token: env:TWILIO_AUTH_TOKEN
            numbers: ["+14155550100"]
            overlap: 10 minutes
        """, [
        "settings.yaml:10:14: channels.twilio.overlap: bad duration '10 minutes'; write e.g. 30s, 10m, 1h",
    ]),
    "shutdown grace too long": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        run: { shutdown_grace: 1h }
        """, [
        "settings.yaml:7:24: run.shutdown_grace: 1h is too long; use at most 10m (e.g. 30s)",
    ]),
    "bad percentage": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
            budget: { daily_reserve: 120% }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:5:30: crms.salesforce.budget.daily_reserve: bad percentage '120%'; write e.g. 20% or 0.2 "
        "(from 0% to 100%)",
    ]),
    "missing secret env var": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth:
              client_id: env:SF_CLIENT_ID
              client_secret: env:SF_SECRET
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:6:22: crms.salesforce.auth.client_secret: environment variable SF_SECRET is not set; "
        "export it or point to a file with file:PATH",
    ]),
    "inline secret": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth:
              client_id: env:SF_CLIENT_ID
              client_secret: Xy7-inline-hunter2
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:6:22: crms.salesforce.auth.client_secret: inline secret; write env:VAR or file:PATH "
        "(e.g. env:SALESFORCE_CLIENT_SECRET) instead of the value",
    ]),
    "inline secret written as a number (and mappings naming a CRM that is absent)": ("settings", """\
        crms:
          hubspot:
            auth: { access_token: 123456789 }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:3:27: crms.hubspot.auth.access_token: inline secret; write env:VAR or file:PATH "
        "(e.g. env:HUBSPOT_ACCESS_TOKEN) instead of the value",
        # the mappings still name salesforce, and nothing for hubspot (positions: the key, or the
        # mapping that lacks one)
        "mappings/identities.yaml:2:3: crms.salesforce: salesforce is not configured in settings.yaml; add it there "
        "(crms.salesforce) or remove this entry",
        "mappings/identities.yaml:2:3: crms.hubspot: hubspot is enabled in settings.yaml but has no entry here; "
        "add crms.hubspot.match so crmhub can find its contacts",
        "mappings/routing.yaml:6:3: default.salesforce: salesforce is not configured in settings.yaml; add it there "
        "(crms.salesforce) or remove this route",
        "mappings/routing.yaml:6:3: default: no route for hubspot, which is enabled in settings.yaml; "
        "add default.hubspot: {queue: support}",
    ]),
    "unreadable secret file": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio:
            account_sid: AC0123456789abcdef0123456789abcdef
            auth_token: file:secrets/twilio-token
            numbers: ["+14155550100"]
        """, [
        "settings.yaml:8:17: channels.twilio.auth_token: cannot read secret file secrets/twilio-token "
        "(No such file or directory); create it or fix the path (relative paths start at the settings file's directory)",
    ]),
    "bad env reference": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: "env:SF CLIENT ID", client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:4:24: crms.salesforce.auth.client_id: bad env: reference; write env: and a variable name "
        "of letters, digits and _, e.g. env:SALESFORCE_CLIENT_ID",
    ]),
    "unknown CRM": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
          dynamics:
            url: https://acme.crm.dynamics.com
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:5:3: unknown CRM 'dynamics' in crms; crmhub supports salesforce, zendesk, hubspot",
    ]),
    "unknown channel": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
          twillio: { account: acme }
        """, [
        "settings.yaml:7:3: unknown channel 'twillio' in channels (did you mean 'twilio'?); crmhub supports twilio, x, email, meta",
    ]),
    "no CRM enabled": ("settings", """\
        crms:
          salesforce:
            enabled: false
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:2:3: crms: no CRM is enabled; enable at least one of salesforce, zendesk, hubspot "
        "(enabled: true is the default)",
    ]),
    "no channel enabled": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels: {}
        """, [
        "settings.yaml:5:11: channels: no channel is enabled; enable at least one of twilio, x, email, meta "
        "(enabled: true is the default)",
    ]),
    "missing required key": ("settings", """\
        crms:
          salesforce:
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:3:5: crms.salesforce.instance_url: required key is missing; add it under crms.salesforce, "
        "e.g. instance_url: https://acme.my.salesforce.com",
    ]),
    "bad state url scheme": ("settings", """\
        state:
          url: mysql://crmhub@db/crmhub
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:2:8: state.url: unsupported database URL scheme 'mysql'; use sqlite:///crmhub.db "
        "or postgresql+psycopg://USER@HOST/DB",
    ]),
    "password inside the state url": ("settings", """\
        state: { url: "postgresql+psycopg://crmhub:pg-pass-77@db/crmhub" }
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:1:15: state.url: the URL holds a password (inline secret); remove it from the URL and write "
        "state.password: env:VAR (e.g. env:CRMHUB_DB_PASSWORD)",
    ]),
    "batch_size out of range": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
            batch_size: 500
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:5:17: crms.salesforce.batch_size: 500 is out of range; use a number from 1 to 200",
    ]),
    "delivery waits out of order": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        delivery:
          latency_budget: 20s
          max_wait: 10s
          calls_per_interaction: { salesforce: -0.1, zendesk: 0 }
        """, [
        "settings.yaml:9:13: delivery.max_wait: 10s is shorter than delivery.latency_budget (20s); make it at least "
        "that long",
        "settings.yaml:10:40: delivery.calls_per_interaction.salesforce: -0.1 is out of range; use a number above 0 "
        "and at most 10",
        "settings.yaml:10:55: delivery.calls_per_interaction.zendesk: 0 is out of range; use a number above 0 and at "
        "most 10",
    ]),
    "account_sid pattern (value not echoed)": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio:
            account_sid: 0123456789abcdef0123456789abcdef
            auth_token: env:TWILIO_AUTH_TOKEN
            numbers: ["+14155550100"]
        """, [
        "settings.yaml:7:18: channels.twilio.account_sid: the value is not a Twilio account SID; write AC followed "
        "by 32 hex digits, from the Twilio console",
    ]),
    "bad phone region": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio:
            account_sid: AC0123456789abcdef0123456789abcdef
            auth_token: env:TWILIO_AUTH_TOKEN
            default_region: UK
            numbers: ["020 7946 0000"]
        """, [
        "settings.yaml:9:21: channels.twilio.default_region: unknown region 'UK'; write an ISO 3166 alpha-2 code "
        "such as US, GB, DE",
    ]),
    "bad phone in numbers": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio:
            account_sid: AC0123456789abcdef0123456789abcdef
            auth_token: env:TWILIO_AUTH_TOKEN
            numbers:
              - "+14155550100"
              - "555-01"
        """, [
        "settings.yaml:11:9: channels.twilio.numbers[1]: '555-01' is not a valid phone number (region US); "
        "write it in international form, e.g. +14155550100",
    ]),
    "unquoted phone number": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio:
            account_sid: AC0123456789abcdef0123456789abcdef
            auth_token: env:TWILIO_AUTH_TOKEN
            numbers: [+442079460000]
        """, [
        "settings.yaml:9:15: channels.twilio.numbers[0]: phone number 442079460000 must be quoted; write it as text, "
        "e.g. '+14155550100' (unquoted, YAML reads it as a number and drops the +)",
    ]),
    "salesforce password flow without its fields": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth:
              flow: password
              client_id: env:SF_CLIENT_ID
              client_secret: env:SF_CLIENT_SECRET
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:5:7: crms.salesforce.auth.username: required by flow: password; add it, "
        "e.g. username: integration@acme.com",
        "settings.yaml:5:7: crms.salesforce.auth.password: required by flow: password; add it, "
        "e.g. password: env:SALESFORCE_PASSWORD",
    ]),
    "zendesk with both kinds of credentials": ("settings", """\
        crms:
          zendesk:
            subdomain: acme
            auth: { email: agent@acme.com, token: env:ZD_TOKEN, oauth_token: env:ZD_TOKEN }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:4:43: crms.zendesk.auth.token: environment variable ZD_TOKEN is not set; export it or point "
        "to a file with file:PATH",
        "settings.yaml:4:57: crms.zendesk.auth.oauth_token: use either email + token or oauth_token, not both; remove one",
        "settings.yaml:4:70: crms.zendesk.auth.oauth_token: environment variable ZD_TOKEN is not set; export it or "
        "point to a file with file:PATH",
        # the shared mapping files were written for salesforce
        "mappings/identities.yaml:2:3: crms.salesforce: salesforce is not configured in settings.yaml; add it there "
        "(crms.salesforce) or remove this entry",
        "mappings/identities.yaml:2:3: crms.zendesk: zendesk is enabled in settings.yaml but has no entry here; "
        "add crms.zendesk.match so crmhub can find its contacts",
        "mappings/routing.yaml:6:3: default.salesforce: salesforce is not configured in settings.yaml; add it there "
        "(crms.salesforce) or remove this route",
        "mappings/routing.yaml:6:3: default: no route for zendesk, which is enabled in settings.yaml; "
        "add default.zendesk: {queue: support}",
    ]),
    "YAML syntax error": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET
        channels:
          twilio: {}
        """, [
        "settings.yaml:5:9: YAML syntax error: expected ',' or '}', but got ':' (while parsing a flow mapping "
        "started at line 4, column 11); check the indentation and quoting here",
    ]),
    "duplicate YAML key": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
            instance_url: https://other.my.salesforce.com
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, [
        "settings.yaml:5:5: duplicate key 'instance_url' (the mapping starts at line 3); keep only one",
    ]),
    "tab indentation": ("settings", "crms:\n\tsalesforce: {}\n", [
        "settings.yaml:2:1: YAML syntax error: found character '\\t' that cannot start any token; indent with spaces, "
        "not tabs",
    ]),
    "empty file": ("settings", "# nothing yet\n", [
        "settings.yaml:1:1: the file is empty; start from the example in docs/configuration.md",
    ]),
    "a list instead of a mapping": ("routing", "- default\n", [
        "mappings/routing.yaml:1:1: the file holds a list; it must be a mapping of keys (key: value), "
        "see the example in docs/configuration.md",
    ]),
    "mapping file not found": ("history", None, [
        "mappings/history.yaml: file not found; create it (see docs/configuration.md) or fix the path",
    ]),
    "mappings directory missing": ("settings", """\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        mappings: conf/mappings/
        """, [
        "settings.yaml:7:11: mappings: directory conf/mappings/ not found; create it with identities.yaml, "
        "routing.yaml and history.yaml, or point mappings: at the right directory (relative to the settings file)",
    ]),
    "rule pointing at an undeclared queue": ("routing", """\
        queues:
          salesforce:
            support: { queue: Support_Queue }
            billing: { queue: Billing_Queue }
        rules:
          - name: refunds
            when: { text_matches: "(?i)refund" }
            route: { salesforce: { queue: billing } }
          - name: big-spenders
            when: { contact: { Tier__c: gold } }
            route:
              salesforce: { queue: vip }
        default:
          salesforce: { queue: support }
        """, [
        "mappings/routing.yaml:12:28: rules[1].route.salesforce.queue: queue 'vip' is not declared; declare it under "
        "queues.salesforce or use one of: support, billing",
    ]),
    "duplicate rule names": ("routing", """\
        queues:
          salesforce:
            support: { queue: Support_Queue }
        rules:
          - name: vip
            route: { salesforce: { queue: support } }
          - name: vip
            route: { salesforce: { queue: support } }
        default:
          salesforce: { queue: support }
        """, [
        "mappings/routing.yaml:7:11: rules[1].name: duplicate rule name 'vip'; rules[0] (line 5) already uses it; "
        "give each rule its own name",
    ]),
    "invalid regex": ("routing", """\
        queues:
          salesforce:
            support: { queue: Support_Queue }
        rules:
          - name: refunds
            when:
              text_matches: "(?i)refund|(chargeback"
            route: { salesforce: { queue: support } }
        default:
          salesforce: { queue: support }
        """, [
        "mappings/routing.yaml:7:21: rules[0].when.text_matches: invalid regular expression '(?i)refund|(chargeback': "
        "missing ), unterminated subpattern at column 12 of the pattern; fix the pattern (Python re syntax; "
        "in double quotes write \\\\ for one backslash)",
    ]),
    "unknown channel in a rule": ("routing", """\
        queues:
          salesforce:
            support: { queue: Support_Queue }
        rules:
          - name: social
            when: { channel: [x_mention, facebook] }
            route: { salesforce: { queue: support } }
        default:
          salesforce: { queue: support }
        """, [
        "mappings/routing.yaml:6:34: rules[0].when.channel[1]: unknown channel 'facebook'; use one of: sms, "
        "whatsapp, call, x_mention, x_dm, email, messenger, instagram",
    ]),
    "route for a CRM that is not configured": ("routing", """\
        queues:
          salesforce:
            support: { queue: Support_Queue }
        rules:
          - name: everything
            route:
              salesforce: { queue: support }
              zendesk: { queue: support }
        default:
          salesforce: { queue: support }
        """, [
        "mappings/routing.yaml:8:7: rules[0].route.zendesk: zendesk is not configured in settings.yaml; add it there "
        "(crms.zendesk) or remove this route",
    ]),
    "default is required": ("routing", """\
        queues:
          salesforce:
            support: { queue: Support_Queue }
        rules: []
        """, [
        "mappings/routing.yaml:1:1: default: required key is missing; add it at the top level, "
        "e.g. default: {salesforce: {queue: support}}",
    ]),
    "bad timezone": ("routing", """\
        timezone: Europe/Lodnon
        queues:
          salesforce:
            support: { queue: Support_Queue }
        default:
          salesforce: { queue: support }
        """, [
        "mappings/routing.yaml:1:11: timezone: unknown time zone 'Europe/Lodnon' (did you mean 'Europe/London'?); "
        "write an IANA name such as Europe/London or UTC",
    ]),
    "business hours ending before they start": ("routing", """\
        business_hours: { start: "18:00", end: "8:00" }
        queues:
          salesforce:
            support: { queue: Support_Queue }
        default:
          salesforce: { queue: support }
        """, [
        "mappings/routing.yaml:1:40: business_hours.end: 08:00 is not after start (18:00); business hours are one "
        "span within a day, set end later than start",
    ]),
    "bad blocked phone": ("identities", """\
        default_region: US
        blocked:
          values:
            - "+10000000000"
            - "+1 (555) 01"
        crms:
          salesforce:
            match: { Contact: { phone: [Phone] } }
        """, [
        "mappings/identities.yaml:5:7: blocked.values[1]: '+1 (555) 01' is not a valid phone number (region US); "
        "write it in international form, e.g. +14155550100",
    ]),
    "invalid blocked pattern": ("identities", """\
        blocked:
          patterns: ["^noreply@", "*bot"]
        crms:
          salesforce:
            match: { Contact: { email: [Email] } }
        """, [
        "mappings/identities.yaml:2:27: blocked.patterns[1]: invalid regular expression '*bot': nothing to repeat at "
        "column 1 of the pattern; fix the pattern (Python re syntax; in double quotes write \\\\ for one backslash)",
    ]),
    "identity mapping for a CRM that is not configured": ("identities", """\
        crms:
          salesforce:
            match: { Contact: { phone: [Phone] } }
          hubspot:
            match: { contacts: { phone: [phone] } }
        """, [
        "mappings/identities.yaml:4:3: crms.hubspot: hubspot is not configured in settings.yaml; add it there "
        "(crms.hubspot) or remove this entry",
    ]),
    "unknown identity kind": ("identities", """\
        crms:
          salesforce:
            match:
              Contact: { phone: [Phone], fax: [Fax] }
        """, [
        "mappings/identities.yaml:4:34: unknown identity kind 'fax' in crms.salesforce.match.Contact; crmhub "
        "supports phone, email, x_handle, whatsapp_user",
    ]),
    "creating an object that is not matched": ("identities", """\
        crms:
          salesforce:
            match:
              Contact: { phone: [Phone] }
            create_when_unmatched: Lead
        """, [
        "mappings/identities.yaml:5:28: crms.salesforce.create_when_unmatched: Lead has no entry under "
        "crms.salesforce.match; add match.Lead or use one of: none, Contact",
    ]),
    "unknown placeholder in history": ("history", """\
        salesforce:
          task:
            Subject: "{channel_label} from {senderr}"
        """, [
        "mappings/history.yaml:3:14: salesforce.task.Subject: unknown placeholder {senderr} (did you mean {sender}?); "
        "use {channel}, {channel_label}, {direction}, {sender}, {recipient}, {text}, {occurred_at}, {duration}, "
        "{media_count}, {conversation}, {rule}, {queue}, {language}",
    ]),
    "reopen window moved from routing.yaml to settings.yaml": ("routing", """\
        queues:
          salesforce:
            support: { queue: Support_Queue }
        default:
          salesforce: { queue: support }
        reopen_window: 7d
        """, [
        "mappings/routing.yaml:6:1: unknown key 'reopen_window' at the top level: it moved to settings.yaml; remove "
        "it here and write threads: { reopen_window: 3d } in settings.yaml",
    ]),
    "join_stated was replaced by statements": ("identities", """\
        join_stated: true
        crms:
          salesforce:
            match:
              Contact: { phone: [Phone] }
        """, [
        "mappings/identities.yaml:1:1: unknown key 'join_stated' at the top level: statements replaced it, and a "
        "statement in a message no longer joins by itself; remove it and write statements: suggest (the default: an "
        "agent or admin confirms each claim), or statements: join to keep joining unchecked",
    ]),
    "unknown statements action": ("identities", """\
        statements: merge
        crms:
          salesforce:
            match:
              Contact: { phone: [Phone] }
        """, [
        "mappings/identities.yaml:1:13: statements: unknown value 'merge'; use one of: suggest, confirm_by_code, ignore, join, or one "
        "per kind: {phone: suggest, email: suggest, x_handle: suggest}",
    ]),
    "unknown statements kind": ("identities", """\
        statements: { phone: suggest, handle: join }
        crms:
          salesforce:
            match:
              Contact: { phone: [Phone] }
        """, [
        "mappings/identities.yaml:1:31: unknown identity kind 'handle' in statements (did you mean 'x_handle'?); "
        "crmhub supports phone, email, x_handle",
    ]),
    "a code text without its code, and one for a channel that sends no codes": ("identities", """\
        statements: { email: confirm_by_code }
        codes:
          texts:
            email: "Reply to this mail to link your address."
            sms: "Your code is {code} {name}"
            x_dm: "Your code is {code}"
        crms:
          salesforce:
            match:
              Contact: { phone: [Phone] }
        """, [
        "mappings/identities.yaml:4:12: codes.texts.email: 'Reply to this mail to link your address.' has no {code}; "
        "write {code} where the one-time code goes",
        "mappings/identities.yaml:5:10: codes.texts.sms: unknown placeholder {name} in a code's text; the only "
        "placeholder is {code}",
        "mappings/identities.yaml:6:5: codes.texts.x_dm: unknown value 'x_dm'; use one of: sms, email",
    ]),
    "language the detector does not know, in a rule": ("routing", """\
        queues:
          salesforce:
            support: { queue: Support_Queue }
        rules:
          - name: farsi
            when: { language: [fa, pes] }
            route: { salesforce: { queue: support } }
          - name: brazil
            when: { language: pt-BR }
            route: { salesforce: { queue: support } }
        default:
          salesforce: { queue: support }
        """, [
        "mappings/routing.yaml:6:28: rules[0].when.language[1]: 'pes' is not a language the detector knows (did you "
        "mean 'fa'?); write an ISO 639-1 code in lower case from the list in docs/languages.md, e.g. en, es, tr, ru, zh",
        "mappings/routing.yaml:9:23: rules[1].when.language[0]: 'pt-BR' is not a language the detector knows (did you "
        "mean 'pt'?); write an ISO 639-1 code in lower case from the list in docs/languages.md, e.g. en, es, tr, ru, zh",
    ]),
    "language the detector does not know, in settings": ("settings", SETTINGS.rstrip(" ") + """\
    languages:
      expected: [en, EN, xx]
      default: english
    """, [
        "settings.yaml:13:18: languages.expected[1]: 'EN' is not a language the detector knows (did you mean 'en'?); "
        "write an ISO 639-1 code in lower case from the list in docs/languages.md, e.g. en, es, tr, ru, zh",
        "settings.yaml:13:22: languages.expected[2]: 'xx' is not a language the detector knows; write an ISO 639-1 "
        "code in lower case from the list in docs/languages.md, e.g. en, es, tr, ru, zh",
        "settings.yaml:14:12: languages.default: 'english' is not a language the detector knows; write an ISO 639-1 "
        "code in lower case from the list in docs/languages.md, e.g. en, es, tr, ru, zh",
    ]),
    "unknown record in history": ("history", """\
        salesforce:
          tasks: { Subject: "{text}" }
        """, [
        "mappings/history.yaml:2:3: unknown key 'tasks' in salesforce (did you mean 'task'?)",
    ]),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_gives_exact_lines(cfg: ConfigDir, case: str) -> None:
    kind, content, expected = CASES[case]
    if content is None:
        (cfg.root / "mappings" / f"{kind}.yaml").unlink()
    else:
        cfg.write(**{kind: content})
    assert cfg.problems() == expected


def test_inline_secret_value_is_never_echoed(cfg: ConfigDir) -> None:
    cfg.write(settings=CASES["inline secret"][1])
    problems = cfg.problems()
    assert not any("Xy7-inline-hunter2" in line for line in problems)


def test_password_in_state_url_is_never_echoed(cfg: ConfigDir) -> None:
    cfg.write(settings=CASES["password inside the state url"][1])
    assert not any("pg-pass-77" in line for line in cfg.problems())


def test_settings_file_not_found(cfg: ConfigDir) -> None:
    assert cfg.problems("conf/settings.yaml") == [
        "conf/settings.yaml: file not found; create it (see docs/configuration.md) or fix the path",
    ]


def test_paths_are_shown_as_given(cfg: ConfigDir) -> None:
    (cfg.root / "conf").mkdir()
    (cfg.root / "settings.yaml").rename(cfg.root / "conf" / "settings.yaml")
    (cfg.root / "mappings").rename(cfg.root / "conf" / "mappings")
    (cfg.root / "conf" / "mappings" / "history.yaml").write_text("salesforce: {case: {Subject: '{nope}'}}\n")
    assert cfg.problems("./conf/settings.yaml") == [
        "conf/mappings/history.yaml:1:30: salesforce.case.Subject: unknown placeholder {nope}; use {channel}, "
        "{channel_label}, {direction}, {sender}, {recipient}, {text}, {occurred_at}, {duration}, {media_count}, "
        "{conversation}, {rule}, {queue}, {language}",
    ]


def test_several_problems_in_one_file_are_all_reported_in_order(cfg: ConfigDir) -> None:
    cfg.write(settings="""\
        log: { level: verbose }
        crms:
          salesforce:
            instance_url: acme.my.salesforce.com
            auth:
              client_id: env:SF_CLIENT_ID
              client_secret: env:MISSING_SECRET
            batch_size: 0
        channels:
          twilio:
            account_sid: AC0123456789abcdef0123456789abcdef
            auth_token: env:TWILIO_AUTH_TOKEN
            numbers: ["+14155550100"]
            poll_every: soon
        retry: { initial_wait: 10s, max_wait: 5s }
        """)
    assert cfg.problems() == [
        "settings.yaml:1:15: log.level: unknown value 'verbose'; use one of: debug, info, warning, error",
        "settings.yaml:4:19: crms.salesforce.instance_url: 'acme.my.salesforce.com' is not an http(s) URL; "
        "write the full URL, e.g. https://example.com",
        "settings.yaml:7:22: crms.salesforce.auth.client_secret: environment variable MISSING_SECRET is not set; "
        "export it or point to a file with file:PATH",
        "settings.yaml:8:17: crms.salesforce.batch_size: 0 is out of range; use a number from 1 to 200",
        "settings.yaml:14:17: channels.twilio.poll_every: bad duration 'soon'; write e.g. 30s, 10m, 1h",
        "settings.yaml:15:39: retry.max_wait: 5s is shorter than retry.initial_wait (10s); make it at least that long",
    ]


def test_problems_across_files_are_reported_together(cfg: ConfigDir) -> None:
    cfg.write(
        settings=CASES["unknown key with suggestion"][1],
        routing=CASES["duplicate rule names"][1],
        history=CASES["unknown record in history"][1],
    )
    assert cfg.problems() == [
        CASES["unknown key with suggestion"][2][0],
        CASES["duplicate rule names"][2][0],
        CASES["unknown record in history"][2][0],
    ]


def test_offline_validation_checks_reference_syntax_only(cfg: ConfigDir) -> None:
    cfg.write(settings=CASES["missing secret env var"][1])
    config = cfg.load(env={}, resolve_secrets=False)
    assert config.settings.crms.salesforce is not None
    cfg.write(settings=CASES["inline secret"][1])
    assert cfg.problems(env={}, resolve_secrets=False) == CASES["inline secret"][2]


def test_secrets_of_a_disabled_section_are_not_read(cfg: ConfigDir) -> None:
    cfg.write(settings="""\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
          x:
            enabled: false
            account: acme
            bearer_token: env:UNSET_1
            consumer_key: env:UNSET_2
            consumer_secret: env:UNSET_3
            access_token: env:UNSET_4
            access_token_secret: env:UNSET_5
        """)
    config = cfg.load()
    assert config.settings.channels.enabled_names() == ("twilio",)
    with pytest.raises(RuntimeError, match="disabled"):
        config.secret("channels.x.bearer_token")


def test_config_error_is_not_chained_to_pydantic(cfg: ConfigDir) -> None:
    # A chained ValidationError would carry the inline secret as its input.
    from crmhub.config import ConfigError, load_config
    from tests.config.conftest import ENV

    cfg.write(settings=CASES["inline secret"][1])
    with pytest.raises(ConfigError) as caught:
        load_config("settings.yaml", environ=ENV)
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert "Xy7-inline-hunter2" not in str(caught.value)


def test_a_switched_off_crm_keeps_its_mappings(cfg: ConfigDir) -> None:
    """`enabled: false` switches a CRM off without rewriting the mappings that name it."""
    cfg.write(settings="""\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
          zendesk:
            enabled: false
            subdomain: acme
            auth: { email: agent@acme.com, token: env:UNSET_ZENDESK_TOKEN }
        channels:
          twilio: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: env:TWILIO_AUTH_TOKEN, numbers: ["+14155550100"] }
        """, identities="""\
        crms:
          salesforce:
            match: { Contact: { phone: [Phone] } }
          zendesk:
            match: { user: { phone: [phone] } }
        """, routing="""\
        queues:
          salesforce: { support: { queue: Support_Queue } }
          zendesk: { support: { group: Support } }
        rules:
          - name: all
            route: { zendesk: { queue: support } }
        default:
          salesforce: { queue: support }
        """)
    config = cfg.load()
    assert config.settings.crms.enabled_names() == ("salesforce",)
    assert config.identities.crms.zendesk is not None
