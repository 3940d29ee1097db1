"""The subset of Zendesk's search language crmhub uses.

https://developer.zendesk.com/documentation/ticketing/using-the-zendesk-api/searching-with-the-zendesk-api/
A query is a list of terms joined by AND: `keyword:value`, `keyword<value`
(`>`, `<=`, `>=`), a leading `-` to negate, and free words. Supported here:

* `type:ticket|user|group` (or the `filter[type]` parameter zenpy adds);
* tickets: `status` (ordered new < open < pending < hold < solved < closed),
  `priority`, `requester_id` / `requester` (id or email), `assignee_id`,
  `group_id` / `group` (id or name), `submitter_id`, `external_id`,
  `tags` / `tag`, `subject`, `description`, `via`, `created`, `updated`;
* users: `email` (any email identity, `*` wildcards), `phone` (digits of
  the phone or any phone identity), `external_id`, `name`, `role`, `tags`,
  `created`, `updated`;
* groups: `name`;
* free words match ticket subject, description and comments, user name,
  email and phone, group name.

An unknown keyword matches nothing. Search is not eventually consistent
here: a record is found as soon as it exists.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from crmhub.sandbox.zendesk.models import ZendeskBackend
from crmhub.sandbox.zendesk.records import PRIORITIES, STATUSES, Record, digits

TOKEN = re.compile(r'-?[a-z_]+(?:<=|>=|:|<|>)(?:"[^"]*"|\S+)|-?"[^"]*"|\S+')
TERM = re.compile(r'^(?P<neg>-)?(?P<key>[a-z_]+)(?P<op><=|>=|:|<|>)(?P<value>.*)$')
KINDS = ("ticket", "user", "group")


@dataclass(frozen=True)
class Term:
    """One search term; `key` is None for a free word."""

    key: str | None
    op: str
    value: str
    negate: bool = False


def parse(query: str) -> list[Term]:
    terms = []
    for token in TOKEN.findall(query.strip()):
        match = TERM.match(token)
        if match:
            terms.append(Term(match["key"], match["op"], match["value"].strip('"').lower(), bool(match["neg"])))
        else:
            negate = token.startswith("-") and len(token) > 1
            terms.append(Term(None, ":", token.lstrip("-").strip('"').lower(), negate))
    return terms


class Searcher:
    """Evaluates parsed queries against the backend's records."""

    def __init__(self, backend: ZendeskBackend) -> None:
        self.backend = backend

    def search(self, query: str, type_filter: str | None = None) -> list[Record]:
        """Matching records, each with `result_type`, tickets first, then users and groups."""
        terms = parse(query)
        named = [t.value for t in terms if t.key == "type" and not t.negate]
        kinds = named or ([type_filter] if type_filter else list(KINDS))
        terms = [t for t in terms if t.key != "type"]
        found = []
        for kind in (k for k in KINDS if k in kinds):
            for record in self._records(kind):
                if all(self._holds(kind, record, term) for term in terms):
                    found.append({**record, "result_type": kind})
        return found

    def users(self, query: str) -> list[Record]:
        """The users matching `query` (the users/search endpoint)."""
        return [r for r in self.search(query, "user") if r.pop("result_type") == "user"]

    def _records(self, kind: str) -> list[Record]:
        return {"ticket": self.backend.tickets, "user": self.backend.users, "group": self.backend.groups}[kind]()

    def _holds(self, kind: str, record: Record, term: Term) -> bool:
        matcher = MATCHERS[kind].get(term.key or "") if term.key else FREE_TEXT[kind]
        result = matcher is not None and matcher(self, record, term)
        return result != term.negate

    # ---- helpers the matchers share -------------------------------------------
    def emails(self, user: Record) -> list[str]:
        return [i["value"] for i in self.backend.identities(user["id"]) if i["type"] == "email"]

    def user_ids(self, value: str) -> set[int]:
        """Users named by id or by email in a term value."""
        if value.isdigit():
            return {int(value)}
        user = self.backend.user_by_email(value)
        return {user["id"]} if user else set()


Matcher = Callable[[Searcher, Record, Term], bool]


def _compare(actual: object, term: Term, order: Iterable[str] | None = None) -> bool:
    """`actual` against the term with its operator; ordered by `order` when given."""
    if actual is None:
        return False
    left, right = str(actual).lower(), term.value
    if order is not None:
        ranks = {name: rank for rank, name in enumerate(order)}
        if left not in ranks or right not in ranks:
            return False
        left_rank, right_rank = ranks[left], ranks[right]
        return {":": left_rank == right_rank, "<": left_rank < right_rank, ">": left_rank > right_rank,
                "<=": left_rank <= right_rank, ">=": left_rank >= right_rank}[term.op]
    return {":": left == right, "<": left < right, ">": left > right, "<=": left <= right,
            ">=": left >= right}[term.op]


def _field(name: str, order: Iterable[str] | None = None) -> Matcher:
    return lambda searcher, record, term: _compare(record.get(name), term, order)


def _contains(*names: str) -> Matcher:
    return lambda searcher, record, term: any(term.value in str(record.get(n) or "").lower() for n in names)


def _in_user_ids(name: str) -> Matcher:
    return lambda searcher, record, term: record.get(name) in searcher.user_ids(term.value)


def _has_tag(searcher: Searcher, record: Record, term: Term) -> bool:
    return term.value in record.get("tags", [])


def _group(searcher: Searcher, record: Record, term: Term) -> bool:
    if term.value.isdigit():
        return record.get("group_id") == int(term.value)
    names = {g["id"] for g in searcher.backend.groups() if g["name"].lower() == term.value}
    return record.get("group_id") in names


def _via(searcher: Searcher, record: Record, term: Term) -> bool:
    return str(record["via"]["channel"]).lower() == term.value


def _email(searcher: Searcher, record: Record, term: Term) -> bool:
    return any(fnmatch.fnmatchcase(email, term.value) for email in searcher.emails(record))


def _phone(searcher: Searcher, record: Record, term: Term) -> bool:
    return bool(digits(term.value)) and record in searcher.backend.users_by_phone(term.value)


def _ticket_text(searcher: Searcher, record: Record, term: Term) -> bool:
    texts = [record.get("subject"), record.get("description")]
    texts += [c["body"] for c in searcher.backend.comments(record["id"])]
    return any(term.value in str(text or "").lower() for text in texts)


def _user_text(searcher: Searcher, record: Record, term: Term) -> bool:
    return (term.value in str(record["name"]).lower() or any(term.value in e for e in searcher.emails(record))
            or _phone(searcher, record, term))


MATCHERS: dict[str, dict[str, Matcher]] = {
    "ticket": {
        "status": _field("status", STATUSES), "priority": _field("priority", PRIORITIES),
        "requester_id": _in_user_ids("requester_id"), "requester": _in_user_ids("requester_id"),
        "assignee_id": _in_user_ids("assignee_id"), "assignee": _in_user_ids("assignee_id"),
        "submitter_id": _in_user_ids("submitter_id"), "group_id": _group, "group": _group,
        "external_id": _field("external_id"), "tags": _has_tag, "tag": _has_tag,
        "subject": _contains("subject"), "description": _contains("description"), "via": _via,
        "created": _field("created_at"), "updated": _field("updated_at"),
    },
    "user": {
        "email": _email, "phone": _phone, "external_id": _field("external_id"), "name": _contains("name"),
        "role": _field("role"), "tags": _has_tag, "tag": _has_tag,
        "created": _field("created_at"), "updated": _field("updated_at"),
    },
    "group": {"name": _contains("name")},
}
FREE_TEXT: dict[str, Matcher] = {"ticket": _ticket_text, "user": _user_text, "group": _contains("name")}
