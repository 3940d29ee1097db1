"""Identity fields the engine asks a CRM to set on existing contacts (a renamed X handle), in one shape.

Every CRM writes them its own way (a Salesforce Composite PATCH, a HubSpot
batch update, a Zendesk users job); which field takes which value is the
same for all: the contact object's first field of that identity kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crmhub.model import HistoryWrite

if TYPE_CHECKING:
    from crmhub.connectors.salesforce import ContactObject


def identity_field_updates(writes: Sequence[HistoryWrite], objects: Mapping[str, ContactObject],
                           fallback: ContactObject | None = None) -> dict[str, tuple[ContactObject, dict[str, Any]]]:
    """Per contact record: (its object, field name -> new value), from the writes' `contact_update`.

    Args:
        objects: the CRM's contact objects by name (`HistoryWrite.contact_object`).
        fallback: the object of a write whose `contact_object` the CRM does not name (Zendesk has one, users).
    """
    updates: dict[str, tuple[ContactObject, dict[str, Any]]] = {}
    for write in writes:
        obj = objects.get(write.contact_object) or fallback
        if not write.contact_update or not write.contact_id or obj is None:
            continue
        for kind, value in write.contact_update.items():
            names = obj.fields_by_kind.get(kind, ())
            if names:
                updates.setdefault(write.contact_id, (obj, {}))[1][names[0]] = value
    return updates
