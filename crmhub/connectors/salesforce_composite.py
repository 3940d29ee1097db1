"""Salesforce Composite: a delivery batch's sObject Collections requests in one API call (issue 13).

Wire format only. A `Subrequest` is one collections request (method, path
under `/services/data/vXX.X/`, records); `composite_bodies` packs them into
Composite requests (`POST /composite`, allOrNone false, collateSubrequests
false so they run in order), at most 5 collections subrequests each (the
documented limit) and 200 records per subrequest; `subrequest_results` reads
each subrequest's per-record answers back, or None where the subrequest
failed as a whole.

Records of different subrequests are tied by relationship references on
crmhub's external ids (`"Who": {"attributes": {"type": "Contact"},
"Crmhub_Person__c": "..."}`), never by `@{ref[i].id}`: a Contact that fails
then fails only the Case and Tasks that name it ("Foreign key external ID
... not found"), where a failed `@{ref[i].id}` would halt the whole
dependent subrequest, every Task of the batch.
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_composite_post.htm

A read may ride along (`ride`): one SOQL query subrequest (`GET
query?q=...`) added to the last Composite when it has room among its five
collections-or-query places, so a periodic read costs no call of its own
while writes go out anyway (`salesforce.SalesforceCrm` carries the replies
poll so, issue 13). It never makes a Composite of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

COLLECTION_LIMIT = 200  # records per sObject Collections request
COLLECTIONS_PER_COMPOSITE = 5  # of a Composite's 25 subrequests, at most 5 collections or queries


@dataclass(frozen=True)
class Subrequest:
    """One sObject Collections request inside a Composite."""

    reference_id: str  # letters, digits and underscores
    method: str
    path: str  # under /services/data/vXX.X/, e.g. composite/sobjects/Task/Crmhub_Key__c
    records: list[dict[str, Any]]

    def chunks(self) -> list[Subrequest]:
        """This request in pieces of at most 200 records (one piece when it fits)."""
        if len(self.records) <= COLLECTION_LIMIT:
            return [self]
        return [Subrequest(f"{self.reference_id}_{n}", self.method, self.path,
                           self.records[start:start + COLLECTION_LIMIT])
                for n, start in enumerate(range(0, len(self.records), COLLECTION_LIMIT))]


@dataclass(frozen=True)
class Ride:
    """A SOQL query riding in a write Composite: its answer is the query's first page, or None."""

    reference_id: str
    soql: str

    def subrequest(self, api_version: str) -> dict[str, Any]:
        return {"method": "GET", "url": f"/services/data/v{api_version}/query?q={quote(self.soql, safe='')}",
                "referenceId": self.reference_id}

    def answer(self, answer: Any) -> Mapping[str, Any] | None:
        """The query's result (`records`, `done`, `nextRecordsUrl`) in a Composite's answer; None if it failed."""
        entries = answer.get("compositeResponse") if isinstance(answer, Mapping) else None
        for entry in entries or []:
            if isinstance(entry, Mapping) and entry.get("referenceId") == self.reference_id:
                body = entry.get("body")
                ok = 200 <= int(entry.get("httpStatusCode") or 0) < 300 and isinstance(body, Mapping)
                return body if ok and isinstance(body.get("records"), list) else None
        return None


def composite_bodies(api_version: str, subrequests: Sequence[Subrequest], ride: Ride | None = None
                     ) -> list[tuple[list[Subrequest], dict[str, Any]]]:
    """Composite request bodies carrying `subrequests` in order, each with the subrequests it carries.

    Subrequests of over 200 records are split; more than 5 collections
    subrequests take several Composites, sent one after the other so that
    relationship references still find what an earlier one wrote. `ride`
    goes last in the last body when that body has a place left, else nowhere.
    """
    pieces = [piece for sub in subrequests if sub.records for piece in sub.chunks()]
    bodies = []
    for start in range(0, len(pieces), COLLECTIONS_PER_COMPOSITE):
        group = pieces[start:start + COLLECTIONS_PER_COMPOSITE]
        bodies.append((group, {"allOrNone": False, "collateSubrequests": False, "compositeRequest": [
            {"method": sub.method, "url": f"/services/data/v{api_version}/{sub.path}",
             "referenceId": sub.reference_id, "body": {"allOrNone": False, "records": sub.records}}
            for sub in group]}))
    if ride is not None and bodies and len(bodies[-1][0]) < COLLECTIONS_PER_COMPOSITE:
        bodies[-1][1]["compositeRequest"].append(ride.subrequest(api_version))
    return bodies


def subrequest_results(answer: Any, group: Sequence[Subrequest]) -> list[list[Mapping[str, Any]] | None]:
    """Each subrequest's SaveResults/UpsertResults, in record order; None for one that failed as a whole.

    A whole failure is an HTTP error status of the subrequest (e.g. 400
    PROCESSING_HALTED) or an answer that is not one result per record.
    """
    entries = answer.get("compositeResponse") if isinstance(answer, Mapping) else None
    by_reference = {e.get("referenceId"): e for e in entries or [] if isinstance(e, Mapping)}
    results: list[list[Mapping[str, Any]] | None] = []
    for sub in group:
        entry = by_reference.get(sub.reference_id) or {}
        body = entry.get("body")
        ok = (200 <= int(entry.get("httpStatusCode") or 0) < 300 and isinstance(body, list)
              and len(body) == len(sub.records) and all(isinstance(r, Mapping) for r in body))
        results.append(body if ok else None)
    return results


def relationship(sobject: str, key_field: str, key: str) -> dict[str, Any]:
    """A reference to the record of `sobject` whose external id `key_field` is `key`."""
    return {"attributes": {"type": sobject}, key_field: key}
