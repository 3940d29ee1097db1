"""Where a Zendesk write stands in the bulk jobs that carry it: the job reference the engine stores.

A write delivered without waiting (`write_history(..., settle_later=True)`)
goes through up to three jobs, one stage per delivery run: its customer's
user (`users/create_many`), its ticket (`tickets/create_many`, whose first
comment may carry it) and its comment (`tickets/update_many`). After each
submit the engine stores `<stage>:<job id>:<item index>`, so the next run
reads the job once (`job_statuses/show_many`) and takes that item's result
without looking anything up. A write that waits for a job it is not in
(a ticket's later comments wait for its earlier one) stores `after:<job id>:-1`;
a known customer's new ticket held back while its batch's users job runs, so
that every new ticket of the batch goes in one `tickets/create_many`, stores
`held:<job id>:-1`.

References without a stage are a submission's job id, or the candidate ids
found after a lost answer (`a,b,c`): they name the jobs to wait for, and
what the jobs did is then found by crmhub's keys.
"""

from __future__ import annotations

from dataclasses import dataclass

USERS = "u"  # the item is the write's customer, a user to create
FIRST = "T"  # the item is the write's new ticket, whose first comment carries the write
TICKET = "t"  # the item is the write's new ticket; the write is a later comment on it
COMMENT = "c"  # the item is the ticket update whose comment carries the write
AFTER = "after"  # the write is in no item: it waits for the job, then goes on
HELD = "held"  # the write's new ticket, never sent, waits for the users job its batch submitted (one tickets job)
STAGES = frozenset({USERS, FIRST, TICKET, COMMENT, AFTER, HELD})
LAST_STAGES = frozenset({FIRST, COMMENT})  # the write is in the ticket once this job has run: nothing follows
RUNNING = frozenset({"queued", "working"})


@dataclass(frozen=True)
class JobRef:
    """A write's place in one bulk job: the stage, the job id, the item's index in the job (-1: none)."""

    stage: str
    job: str
    index: int = -1

    def __str__(self) -> str:
        return f"{self.stage}:{self.job}:{self.index}"


def parse(ref: str) -> tuple[list[str], JobRef | None]:
    """(the job ids to wait for, the write's place when the reference names one)."""
    parts = ref.split(":")
    if len(parts) == 3 and parts[0] in STAGES and parts[1]:
        try:
            return [parts[1]], JobRef(parts[0], parts[1], int(parts[2]))
        except ValueError:
            pass
    return [job for job in ref.split(",") if job and ":" not in job], None
