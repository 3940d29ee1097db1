"""Who is in the demo's story: the org, the customers, and what each of them sends.

Kept apart from the acts so that the test of `crmhub demo` can assert on the
same names and numbers the story uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OUR_NUMBER = "+14155550100"
OUR_WHATSAPP = "+14155550199"
QUEUES = ("Support_Queue", "Billing_Queue", "VIP_Queue")
LATE_QUEUE = "Social_Queue"  # routing.yaml names it before anyone created it in Salesforce
AGENT = ("alice@acme.test", "Alice Agent")

JANE_PHONE = "+14155550123"
BOB_PHONE = "+14155550124"
STRANGER_PHONE = "+14155550125"
ANA_PHONE = "+14155550126"
JANE_ON_X = "JaneOnX"

CONTACTS: tuple[dict[str, Any], ...] = (
    {"sobject": "Contact", "FirstName": "Jane", "LastName": "Doe", "Phone": "(415) 555-0123", "Tier__c": "Gold",
     "Email": "jane.doe@example.com"},  # JANE_EMAIL
    {"sobject": "Contact", "FirstName": "Bob", "LastName": "Lee", "MobilePhone": "+1 415.555.0124"},
    {"sobject": "Lead", "FirstName": "Ana", "LastName": "Ruiz", "Phone": "415 555 0126", "Company": "Ruiz SL"},
)
# The same customers in Zendesk and HubSpot (first name, last name, phone), for `crmhub sandbox`.
CUSTOMERS: tuple[tuple[str, str, str], ...] = (("Jane", "Doe", JANE_PHONE), ("Bob", "Lee", BOB_PHONE))


@dataclass(frozen=True)
class Text:
    """An inbound SMS or WhatsApp message, `minutes` after the story starts."""

    sender: str
    to: str
    body: str
    minutes: int


# Act 1: customers write in on every channel at once.
FIRST_TEXTS: tuple[Text, ...] = (
    Text(JANE_PHONE, OUR_NUMBER, "Hi, my order #1234 hasn't arrived yet", 0),
    Text(BOB_PHONE, OUR_NUMBER, "I was charged twice, I need a refund", 3),
    Text(STRANGER_PHONE, OUR_NUMBER, "Hello, do you ship to Canada?", 5),
    Text(f"whatsapp:{ANA_PHONE}", f"whatsapp:{OUR_WHATSAPP}", "Hola, ¿tienen tienda en Madrid?", 8),
    Text("+14155550127", OUR_NUMBER, "", 12),  # no text, no media: a dead letter with its reason
)
BOB_CALL_MINUTES = 4  # Bob also calls; nobody answers
JANE_MENTION = "my parcel is late again, order 1234. Anyone there?"
JANE_MENTION_MINUTES = 10
SAM_ON_MESSENGER = "Sam Park"  # writes to the Page on Messenger; known to no CRM record
SAM_MESSAGE = "Is the blue kettle back in stock? I'd like to order two."
SAM_MESSAGE_MINUTES = 14
# Act 3: Jane says, on SMS, who she is on X.
JANE_STATES_HANDLE = Text(JANE_PHONE, OUR_NUMBER, f"Any update? I also wrote to you on X, I'm @{JANE_ON_X}", 40)
# Act 4: an agent answers her in Salesforce.
AGENT_REPLY = "Hi Jane, order 1234 left our warehouse this morning. Sorry for the wait!"
SAM_REPLY = "Hi Sam, yes: the blue kettle is back since Monday. Two are on hold for you."
# Act 7: Jane emails about the invoice (from the address on her Contact); the agent answers by email.
SUPPORT_EMAIL = "support@crmhub.test"  # the sandbox mail server's support mailbox
JANE_EMAIL = "jane.doe@example.com"
JANE_EMAIL_SUBJECT = "Invoice for order 1234"
JANE_EMAIL_TEXT = "Hello, could you send me the invoice for order 1234? My accountant needs it."
EMAIL_REPLY = "Hi Jane, the invoice for order 1234 is on its way to this address. Best, Alice"
# Act 6: Jane and Bob answer the satisfaction question crmhub sends when their cases close.
SURVEY_ANSWERS: tuple[tuple[str, str], ...] = ((JANE_PHONE, "5"), (BOB_PHONE, "good, thanks"))
