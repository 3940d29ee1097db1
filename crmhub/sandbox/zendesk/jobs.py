"""Background jobs of the bulk endpoints (create_many, update_many, ...).

Zendesk answers a bulk request at once with a queued job status and does the
work in the background; clients poll `GET /api/v2/job_statuses/{id}.json`
(or several at once with `show_many.json?ids=`) until it is `completed`,
then read one result per item. As with moto's
state manager, the job here moves queued -> working -> completed one step
every `job_reads_per_step` reads of its status (0: the first read completes
it; None: only `finish()` moves it). The work itself is done when the job
completes, so records appear when a real job would have made them. A job
nobody polls still completes once it is `job_autocomplete_seconds` old in
sandbox time, like the real background worker.

Result shapes follow https://developer.zendesk.com/api-reference/ticketing/ticket-management/job_statuses/:
created items `{index, id}` (users also `status: "Created"`, `email`),
updated items `{index, id, action: "update", status: "Updated", success: true}`,
failed items `{index, status: "Failed", success: false, error, details}`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from crmhub.sandbox.zendesk.errors import ZendeskError, not_found
from crmhub.sandbox.zendesk.models import ZendeskBackend
from crmhub.sandbox.zendesk.records import Record, api_url, public_view

JOB_TYPES = {
    "tickets.create": "bulk_create_tickets", "tickets.update": "bulk_update_tickets",
    "users.create": "bulk_create_users", "users.create_or_update": "bulk_create_or_update_users",
    "users.update": "bulk_update_users",
}
Work = Callable[[ZendeskBackend, Record, int], Record]


class JobRunner:
    """Queues bulk work and advances the job statuses of one account."""

    def __init__(self, backend: ZendeskBackend) -> None:
        self.backend = backend

    @property
    def _jobs(self) -> dict[str, Record]:
        jobs: dict[str, Record] = self.backend.state["jobs"]
        return jobs

    def submit(self, kind: str, items: Sequence[Mapping[str, Any]], actor_id: int,
               reject: Sequence[int] = ()) -> Record:
        """Queue a job over `items`; the items at `reject` will fail (fault `partial_failure`)."""
        number = self.backend.next_id("job")
        job_id = hashlib.md5(f"crmhub-sandbox-job-{number}".encode()).hexdigest()
        job: Record = {
            "id": job_id, "url": api_url(f"job_statuses/{job_id}.json"), "job_type": JOB_TYPES[kind],
            "status": "queued", "total": len(items), "progress": None, "message": None, "results": None,
            "_kind": kind, "_items": [dict(item) for item in items], "_actor": actor_id,
            "_reject": sorted(set(reject)), "_reads": 0, "_submitted": self.backend.clock.time(),
        }
        self._jobs[job_id] = job
        return public_view(job)

    def read(self, job_id: str, reads_per_step: int | None) -> Record:
        """The job status as a poll sees it; each read may move the job one step."""
        job = self._job(job_id)
        if job["status"] == "completed" or reads_per_step is None:
            return public_view(job)
        if reads_per_step == 0:
            self._complete(job)
        else:
            job["_reads"] += 1
            if job["_reads"] >= reads_per_step:
                job["_reads"] = 0
                self._step(job)
        return public_view(job)

    def read_many(self, job_ids: list[str], reads_per_step: int | None) -> list[Record]:
        """`show_many`: the known jobs among `job_ids`, in the order asked (expired or unknown ones left out)."""
        return [self.read(job_id, reads_per_step) for job_id in dict.fromkeys(job_ids) if job_id in self._jobs]

    def recent(self, reads_per_step: int | None, limit: int = 100) -> tuple[list[Record], bool]:
        """The newest `limit` jobs, newest first, as `GET /job_statuses` lists them: (page, has_more).

        Listing a job counts as a read of its status (it may move one step).
        Only the first page is emulated (`has_more` says whether there are
        older ones); a job is kept for the sandbox's life, not one day.
        """
        newest = list(reversed(self._jobs.values()))  # kept in submission order
        return [self.read(job["id"], reads_per_step) for job in newest[:limit]], len(newest) > limit

    def finish(self, job_id: str | None = None) -> None:
        """Complete one job, or every unfinished job (the 'only when told' transition)."""
        for job in [self._job(job_id)] if job_id else list(self._jobs.values()):
            self._complete(job)

    def complete_stale(self, max_age: float | None) -> None:
        """Complete jobs older than `max_age` sandbox seconds (the background worker)."""
        if max_age is None:
            return
        now = self.backend.clock.time()
        for job in list(self._jobs.values()):
            if job["status"] != "completed" and now - job["_submitted"] >= max_age:
                self._complete(job)

    def _job(self, job_id: str) -> Record:
        job = self._jobs.get(job_id)
        if job is None:
            raise not_found()
        return job

    def _step(self, job: Record) -> None:
        if job["status"] == "queued":
            job.update(status="working", progress=0)
        elif job["status"] == "working":
            self._complete(job)

    def _complete(self, job: Record) -> None:
        if job["status"] == "completed":
            return
        work = WORK[job["_kind"]]
        results = [self._run_item(work, index, item, job) for index, item in enumerate(job["_items"])]
        job.update(status="completed", progress=job["total"], results=results,
                   message=f"Completed at {self.backend.now().replace('T', ' ').replace('Z', ' +0000')}")

    def _run_item(self, work: Work, index: int, item: Record, job: Record) -> Record:
        if index in job["_reject"]:
            return _failed(index, item, job["_kind"], "RecordInvalid",
                           "Rejected by the sandbox fault partial_failure")
        try:
            return {"index": index, **work(self.backend, item, job["_actor"])}
        except ZendeskError as exc:
            return _failed(index, item, job["_kind"], exc.error, _error_details(exc))


def _failed(index: int, item: Mapping[str, Any], kind: str, error: str, details: str) -> Record:
    result: Record = {"index": index, "status": "Failed", "success": False, "error": error, "details": details}
    if kind.endswith(".update") and item.get("id") is not None:
        result.update(id=item["id"], action="update")
    return result


def _error_details(exc: ZendeskError) -> str:
    """One line out of Zendesk's error envelope, as job results carry it."""
    if exc.details:
        return "; ".join(entry["description"] for entries in exc.details.values() for entry in entries)
    return exc.description or exc.error


def _create_ticket(backend: ZendeskBackend, item: Record, actor: int) -> Record:
    ticket, _ = backend.create_ticket(item, actor)
    return {"id": ticket["id"]}


def _update_ticket(backend: ZendeskBackend, item: Record, actor: int) -> Record:
    ticket, _ = backend.update_ticket(item.get("id"), item, actor)
    return {"id": ticket["id"], "action": "update", "status": "Updated", "success": True}


def _create_user(backend: ZendeskBackend, item: Record, actor: int) -> Record:
    user = backend.create_user(item)
    return {"id": user["id"], "status": "Created", "email": user["email"]}


def _create_or_update_user(backend: ZendeskBackend, item: Record, actor: int) -> Record:
    user, created = backend.create_or_update_user(item)
    return {"id": user["id"], "status": "Created" if created else "Updated", "email": user["email"]}


def _update_user(backend: ZendeskBackend, item: Record, actor: int) -> Record:
    user = backend.update_user(item.get("id"), {k: v for k, v in item.items() if k != "id"})
    return {"id": user["id"], "action": "update", "status": "Updated", "success": True}


WORK: dict[str, Work] = {
    "tickets.create": _create_ticket, "tickets.update": _update_ticket,
    "users.create": _create_user, "users.create_or_update": _create_or_update_user, "users.update": _update_user,
}
