"""The one table of emulated objects and fields, shared by describe, validation and SOQL.

Each object lists its fields once; describe answers are rendered from it,
writes are validated against it and SOQL resolves names and types with it.
Custom fields added at run time (`define_field`) live in the emulator state
and are merged in by `SObjectSchema.build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

API_VERSION = "59.0"
API_PATH = f"/services/data/v{API_VERSION}"

STRING_TYPES = frozenset({"string", "textarea", "email", "phone", "picklist", "combobox", "url"})
ID_TYPES = frozenset({"id", "reference"})
SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "datetime": "xsd:dateTime",
    "date": "xsd:date", "int": "xsd:int", "double": "xsd:double",
}
DEFAULT_LENGTHS = {"string": 255, "textarea": 32000, "email": 80, "phone": 40, "picklist": 255,
                   "combobox": 255, "url": 255}
CUSTOM_FIELD_TYPES = frozenset(STRING_TYPES | {"boolean", "date", "datetime", "int", "double"})


@dataclass(frozen=True)
class Field:
    """One field's metadata, in the terms of Salesforce's describe result."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    required: bool = False  # must have a value after defaults (REQUIRED_FIELD_MISSING)
    nillable: bool = True
    default: Any = None
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    reference_to: tuple[str, ...] = ()
    picklist: tuple[str, ...] = ()

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    @property
    def text(self) -> bool:
        """Compared as text in SOQL and checked for length on write."""
        return self.type in STRING_TYPES

    def describe(self) -> dict[str, Any]:
        """This field as an item of describe's `fields` list."""
        return {
            "name": self.name, "label": self.label or self.name, "type": self.type,
            "soapType": SOAP_TYPES.get(self.type, "xsd:string"), "length": self.length,
            "custom": self.custom, "externalId": self.external_id, "unique": self.unique,
            "nillable": self.nillable, "createable": self.createable, "updateable": self.updateable,
            "defaultedOnCreate": self.default is not None or self.name in _SYSTEM_DEFAULTED,
            "defaultValue": self.default, "calculated": not (self.createable or self.updateable),
            "filterable": True, "sortable": self.type != "textarea", "idLookup": self.name == "Id",
            "restrictedPicklist": False,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.name[:-2] if self.type == "reference" and self.name.endswith("Id") else None,
            "picklistValues": [
                {"active": True, "defaultValue": v == self.default, "label": v, "validFor": None, "value": v}
                for v in self.picklist
            ],
        }


def _f(name: str, type_: str, label: str = "", **kwargs: Any) -> Field:
    """A field with Salesforce's default length for its type."""
    kwargs.setdefault("length", DEFAULT_LENGTHS.get(type_, 18 if type_ in ID_TYPES else 0))
    if kwargs.get("required"):
        kwargs.setdefault("nillable", False)
    return Field(name, type_, label or name, **kwargs)


def _read_only(name: str, type_: str, label: str = "", **kwargs: Any) -> Field:
    return _f(name, type_, label, createable=False, updateable=False, **kwargs)


_SYSTEM_DEFAULTED = frozenset({"Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate",
                               "LastModifiedById", "SystemModstamp", "OwnerId"})
SYSTEM_FIELDS = frozenset(_SYSTEM_DEFAULTED - {"OwnerId"})
_SYSTEM = (
    _read_only("Id", "id", "Record ID", nillable=False),
    _read_only("IsDeleted", "boolean", "Deleted", nillable=False),
    _read_only("CreatedDate", "datetime", "Created Date", nillable=False),
    _read_only("CreatedById", "reference", "Created By ID", nillable=False, reference_to=("User",)),
    _read_only("LastModifiedDate", "datetime", "Last Modified Date", nillable=False),
    _read_only("LastModifiedById", "reference", "Last Modified By ID", nillable=False, reference_to=("User",)),
    _read_only("SystemModstamp", "datetime", "System Modstamp", nillable=False),
)
_OWNER = _f("OwnerId", "reference", "Owner ID", nillable=False, reference_to=("User", "Group"))
_PERSON = (
    _f("FirstName", "string", "First Name", length=40),
    _f("LastName", "string", "Last Name", length=80, required=True),
    _read_only("Name", "string", "Full Name", length=121),
    _f("Email", "email"),
    _f("Phone", "phone", "Business Phone"),
    _f("MobilePhone", "phone", "Mobile Phone"),
    _OWNER,
    _f("X_Handle__c", "string", "X Handle"),
    _f("Tier__c", "picklist", "Tier", picklist=("Standard", "Gold", "Platinum")),
    _f("Crmhub_Person__c", "string", "crmhub Person", external_id=True, unique=True),
)


@dataclass(frozen=True)
class SObjectType:
    """One object: names, key prefix, the object-level permissions and its fields."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[Field, ...]
    createable: bool = True
    updateable: bool = True
    deletable: bool = True


OBJECTS: dict[str, SObjectType] = {o.name: o for o in (
    SObjectType("Account", "Account", "Accounts", "001", (_f("Name", "string", "Account Name", required=True), _OWNER)),
    SObjectType("Contact", "Contact", "Contacts", "003", (
        *_PERSON, _f("AccountId", "reference", "Account ID", reference_to=("Account",)),
        _read_only("MasterRecordId", "reference", "Master Record ID", reference_to=("Contact",)),
    )),
    SObjectType("Lead", "Lead", "Leads", "00Q", (
        *_PERSON,
        _read_only("MasterRecordId", "reference", "Master Record ID", reference_to=("Lead",)),
        _f("Company", "string", required=True),
        _f("Status", "picklist", "Status", required=True, default="Open - Not Contacted",
           picklist=("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")),
        _f("IsConverted", "boolean", "Converted", nillable=False, default=False, updateable=False),
    )),
    SObjectType("Case", "Case", "Cases", "500", (
        _read_only("CaseNumber", "string", "Case Number", length=30, nillable=False),
        _f("Subject", "string"),
        _f("Description", "textarea"),
        _f("Status", "picklist", default="New", picklist=("New", "Working", "Escalated", "Closed")),
        _read_only("IsClosed", "boolean", "Closed", nillable=False),
        _read_only("ClosedDate", "datetime", "Closed Date"),
        _f("Origin", "picklist", "Case Origin", picklist=("Phone", "Email", "Web", "SMS", "WhatsApp", "X")),
        _f("Priority", "picklist", default="Medium", picklist=("High", "Medium", "Low")),
        _OWNER,
        _f("ContactId", "reference", "Contact ID", reference_to=("Contact",)),
        _f("Crmhub_Conversation__c", "string", "crmhub Conversation", external_id=True),
        # crmhub's survey scores: Number(2, 0) custom fields, which the API types as double.
        _f("Crmhub_CSAT__c", "double", "crmhub CSAT"),
        _f("Crmhub_NPS__c", "double", "crmhub NPS"),
        _f("Crmhub_Link__c", "string", "crmhub Link"),  # agents confirm link suggestions in it (docs/identity.md)
    )),
    SObjectType("Task", "Task", "Tasks", "00T", (
        _f("Subject", "combobox"),
        _f("Description", "textarea", "Comments"),
        _f("Status", "picklist", required=True, default="Not Started",
           picklist=("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")),
        _read_only("IsClosed", "boolean", "Closed", nillable=False),
        _f("Priority", "picklist", required=True, default="Normal", picklist=("High", "Normal", "Low")),
        _f("TaskSubtype", "picklist", "Task Subtype", updateable=False,
           picklist=("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn")),
        _f("WhoId", "reference", "Name ID", reference_to=("Contact", "Lead")),
        _f("WhatId", "reference", "Related To ID", reference_to=("Account", "Case")),
        _f("ActivityDate", "date", "Due Date Only"),
        _f("CallDurationInSeconds", "int", "Call Duration"),
        _f("CallType", "picklist", "Call Type", picklist=("Internal", "Inbound", "Outbound")),
        _OWNER,
        _f("Crmhub_Key__c", "string", "crmhub Key", external_id=True, unique=True),
    )),
    SObjectType("CaseComment", "Case Comment", "Case Comments", "00a", (
        _f("ParentId", "reference", "Parent Case ID", required=True, updateable=False, reference_to=("Case",)),
        _f("CommentBody", "textarea", "Body", length=4000),
        _f("IsPublished", "boolean", "Published", nillable=False, default=False),
    )),
    SObjectType("Group", "Group", "Groups", "00G", (
        _f("Name", "string", length=40, required=True),
        _f("DeveloperName", "string", "Developer Name", length=80, unique=True),
        _f("Type", "picklist", required=True, default="Regular", updateable=False, picklist=("Regular", "Queue")),
    )),
    SObjectType("User", "User", "Users", "005", (
        _read_only("Name", "string", "Full Name", length=121),
        _read_only("Username", "string", length=80, unique=True),
        _read_only("Email", "email", "Email"),
        _read_only("IsActive", "boolean", "Active", nillable=False),
    ), createable=False, updateable=False, deletable=False),
)}

OBJECTS_BY_PREFIX = {o.key_prefix: o.name for o in OBJECTS.values()}
QUERY_LOCATOR_PREFIX = "01g"
ORG_PREFIX = "00D"


@dataclass
class SObjectSchema:
    """An object's fields, built-in and custom, looked up case-insensitively."""

    type: SObjectType
    fields: dict[str, Field] = field(default_factory=dict)  # canonical name -> Field, in describe order
    _by_lower: dict[str, Field] = field(default_factory=dict)

    @classmethod
    def build(cls, sobject: SObjectType, custom: list[dict[str, Any]],
              security: dict[str, str] | None = None) -> SObjectSchema:
        """The object's schema with the custom fields defined at run time appended.

        `security` is the integration user's field-level security (field name
        -> "hidden" or "read"): a hidden field is absent for it everywhere
        (describe, SOQL, writes), a read-only one is neither createable nor
        updateable.
        """
        security = {name.lower(): access for name, access in (security or {}).items()}
        all_fields = (*_SYSTEM, *sobject.fields, *(custom_field(**spec) for spec in custom))
        fields = {f.name: replace(f, createable=False, updateable=False)
                  if security.get(f.name.lower()) == "read" else f
                  for f in all_fields if security.get(f.name.lower()) != "hidden"}
        return cls(sobject, fields, {name.lower(): f for name, f in fields.items()})

    @property
    def name(self) -> str:
        return self.type.name

    def get(self, name: str) -> Field | None:
        return self._by_lower.get(name.lower())

    def global_entry(self) -> dict[str, Any]:
        """This object as an item of describeGlobal's `sobjects` list."""
        o = self.type
        base = f"{API_PATH}/sobjects/{o.name}"
        return {
            "name": o.name, "label": o.label, "labelPlural": o.label_plural, "keyPrefix": o.key_prefix,
            "custom": False, "createable": o.createable, "updateable": o.updateable, "deletable": o.deletable,
            "queryable": True, "retrieveable": True, "searchable": True, "undeletable": o.deletable,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        }

    def describe(self) -> dict[str, Any]:
        """The object's describe result (GET /sobjects/{O}/describe)."""
        return {**self.global_entry(), "fields": [f.describe() for f in self.fields.values()]}


def custom_field(name: str, type: str, external_id: bool = False, unique: bool = False,  # noqa: A002  # describe's word
                 label: str = "", length: int = 0) -> Field:
    """A custom field from its stored spec (see `define_field`)."""
    sized: dict[str, Any] = {"length": length} if length else {}
    return _f(name, type, label, external_id=external_id, unique=unique, **sized)
