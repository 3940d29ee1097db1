"""The `crmhub` command line.

Errors meant for people (invalid settings, an unreachable CRM) are printed
without a traceback and give exit code 1; anything else is a bug and shows
its traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from crmhub.errors import ConfigError, CrmhubError
from crmhub.logs import configure as configure_logs

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="crmhub: every customer message, call, mention and DM on the right CRM record.")
F = TypeVar("F", bound=Callable[..., Any])

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", envvar="CRMHUB_CONFIG",
    help="settings.yaml to use (default: $CRMHUB_CONFIG, else the embedded sandbox defaults; commands that "
         "inspect or change a state store want --sandbox for those).",
    exists=False, dir_okay=False)]
SandboxOption = Annotated[bool, typer.Option(
    "--sandbox", help="Use the embedded sandbox defaults (./crmhub.db) when no --config or CRMHUB_CONFIG is given.")]


def for_people(fn: F) -> F:
    """Print crmhub's own errors as their message and exit 1, no traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            for problem in exc.problems:
                typer.echo(problem, err=True)
            count = len(exc.problems)
            typer.echo(f"{count} problem{'s' if count != 1 else ''} found; crmhub did not start.", err=True)
            raise typer.Exit(1) from None
        except CrmhubError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]  # same signature


@app.command()
@for_people
def validate(config: ConfigOption = None,
             offline_secrets: Annotated[bool, typer.Option(
                 "--offline-secrets", help="Check only how secrets are referenced, not that they resolve "
                                           "(where the env vars and files are absent, e.g. in CI).")] = False,
             online: Annotated[bool, typer.Option(
                 "--online", help="Then run `crmhub check` against the configured systems.")] = False,
             ) -> None:
    """Check settings.yaml and the mappings offline; print every problem with file and line."""
    from crmhub.config import load_config

    from crmhub.config.warnings import config_warnings

    if online and offline_secrets:
        raise CrmhubError("--online needs the secrets to reach the systems; drop --offline-secrets")
    loaded = load_config(config, resolve_secrets=not offline_secrets)
    for warning in config_warnings(loaded):  # risky but valid: shown, never an exit 1
        typer.echo(warning, err=True)
    typer.echo(f"{config or loaded.source}: OK ({_summary(loaded)})")
    if online:
        from crmhub.check import run_check

        _print_check(run_check(loaded), as_json=False)


@app.command()
@for_people
def check(config: ConfigOption = None, sandbox: SandboxOption = False,
          as_json: Annotated[bool, typer.Option("--json", help="Every check as JSON.")] = False) -> None:
    """Preflight, read-only: credentials, objects, fields, queues, pipelines, numbers and webhook URLs
    in the configured systems; one line per problem with its fix (docs/check.md)."""
    from crmhub.check import run_check
    from crmhub.config import load_config

    if config is None and not sandbox:
        raise CrmhubError("no settings given: pass --config /etc/crmhub/settings.yaml or set CRMHUB_CONFIG; "
                          "add --sandbox to check the embedded sandbox defaults against a running `crmhub sandbox`")
    _print_check(run_check(load_config(config)), as_json=as_json)


def _print_check(report: Any, *, as_json: bool) -> None:
    """The problems one per line (exit 1), or the table of what passed; or all of it as JSON."""
    from rich.console import Console

    if as_json:
        typer.echo(report.to_json())
    elif report.ok:
        report.print_table(Console(soft_wrap=True))
    else:
        for line in report.lines():
            typer.echo(line)
        sys.stdout.flush()  # the lines before the count on stderr, in a terminal too
        count = len(report.problems)
        typer.echo(f"{count} problem{'s' if count != 1 else ''} found by crmhub check.", err=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@for_people
def schema(out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the JSON Schemas to.")]
           = Path("schemas")) -> None:
    """Write JSON Schemas of settings.yaml and the mappings, for editors."""
    from crmhub.config import write_schemas

    for path in write_schemas(out):
        typer.echo(str(path))


@app.command()
@for_people
def status(config: ConfigOption = None, sandbox: SandboxOption = False,
           as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Print cursors, ledger, outbox and dead-letter counts of the state store."""
    from crmhub.ops import opened
    from crmhub.status import print_status, store_status
    from crmhub.streams import all_streams

    with opened(config, sandbox=sandbox) as (loaded, store):
        report = store_status(store, all_streams(loaded.settings, list(loaded.settings.crms.enabled_names())))
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        print_status(report)


@app.command()
@for_people
def adopt(config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """After restoring the state store from a backup: look for everything before now in the CRMs before writing."""
    from datetime import UTC, datetime

    from crmhub.ops import opened
    from crmhub.store import adoption

    with opened(config, sandbox=sandbox) as (loaded, store), store.transaction() as session:
        now = until = datetime.now(UTC)
        crms = loaded.settings.crms.enabled_names()
        for crm in crms:
            until = adoption.behind(session, crm, now=now)
    typer.echo(f"{', '.join(crms) or 'no CRM'}: items from before {until.isoformat(timespec='seconds')} (now, "
               "and a margin for the channels' clocks) are looked "
               "for by crmhub's keys before they are written (an earlier store may have written them)")


@app.command()
@for_people
def sync(config: ConfigOption = None) -> None:
    """Run one full cycle: poll channels, refresh mirrors, route, deliver to the CRMs."""
    from crmhub.status import print_cycle

    with _hub(config) as hub:
        cycle = hub.sync_once()
    print_cycle(cycle)
    if cycle.failures:
        raise typer.Exit(1)  # the steps that could ran; print_cycle named the ones that failed


@app.command()
@for_people
def run(config: ConfigOption = None) -> None:
    """Run as a service: poll, mirror and deliver on their intervals until SIGTERM."""
    from crmhub.scheduler import leave_promptly, run_forever

    with _hub(config) as hub:
        run_forever(hub)
    leave_promptly()


@app.command()
@for_people
def webhooks(config: ConfigOption = None) -> None:
    """Run only the webhook receiver (webhooks.host:port) and the ops listener, e.g. beside a `crmhub run` with webhooks off."""
    from crmhub.scheduler import serve_webhooks_forever

    with _hub(config) as hub:
        serve_webhooks_forever(hub)


@app.command()
@for_people
def demo(keep_state: Annotated[bool, typer.Option(help="Keep the demo's SQLite file from an earlier run.")]
         = False) -> None:
    """Tell the whole story on the sandbox: channels, routing, a dead letter and its replay, a merge, a reply."""
    from crmhub.demo import run_demo

    configure_logs("warning")  # the demo prints its own story; warnings still show
    run_demo(keep_state=keep_state)


sandbox_app = typer.Typer(help="The API emulators and a mail server with the demo org, and a customer to play "
                                       "against them.")
app.add_typer(sandbox_app, name="sandbox")
BasePortOption = Annotated[int | None, typer.Option(help="First port (default 8700: 8700-8708).")]


@sandbox_app.callback(invoke_without_command=True)
@for_people
def sandbox(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the base URLs as JSON.")] = False,
    base_port: BasePortOption = None,
    state_dir: Annotated[Path | None, typer.Option(help="Persist each emulator's state here.")] = None,
    empty: Annotated[bool, typer.Option("--empty", help="Start bare: no queues, contacts or numbers.")] = False,
    traffic: Annotated[int | None, typer.Option(metavar="SEED", help="Also replay a generated day of traffic "
                                                                     "drawn from SEED.")] = None,
) -> None:
    """Run the API emulators and the mail server, seeded with the demo org, until interrupted."""
    if ctx.invoked_subcommand is not None:
        return
    from crmhub.demo.org import sandbox_preparation
    from crmhub.sandbox.serve import serve_forever

    serve_forever(base_port=base_port, state_dir=state_dir, as_json=as_json,
                  prepare=sandbox_preparation(seed=not empty, traffic=traffic))


@sandbox_app.command("inbound")
@for_people
def sandbox_inbound(
    kind: Annotated[str, typer.Argument(help="sms, whatsapp, call, x-mention, x-dm, messenger, instagram or email.")],
    sender: Annotated[str, typer.Option("--from", help="The customer: a phone number (E.164), an X handle, a "
                                                       "Messenger / Instagram name or an email address.")],
    text: Annotated[str | None, typer.Option(help="What the customer writes (a call needs none).")] = None,
    subject: Annotated[str | None, typer.Option(help="An email's subject.")] = None,
    to: Annotated[str | None, typer.Option(help="Our number, X account, Page or support address (default: the "
                                                "embedded settings').")] = None,
    base_port: BasePortOption = None,
) -> None:
    """Play a customer against a running `crmhub sandbox`: an SMS, WhatsApp, call, X mention or DM, Messenger or
    Instagram message, or an email."""
    from crmhub.sandbox.inbound import play_inbound

    typer.echo(play_inbound(kind, sender, text, to=to, subject=subject, base_port=base_port).line)


@app.command()
@for_people
def explain(interaction: Annotated[str, typer.Argument(help="A ledger id, or channel:external_id (e.g. sms:SM...).")],
            config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """Why an interaction went where it went: person, links, rules tried, targets, outbox state."""
    from crmhub.ops import opened
    from crmhub.ops.explain import explain as explain_interaction

    with opened(config, sandbox=sandbox) as (_, store), store.transaction() as session:
        _print_lines(explain_interaction(session, interaction).lines())


@app.command()
@for_people
def route(dry_run: Annotated[bool, typer.Option("--dry-run", help="Replay the routing; write nothing.")] = False,
          since: Annotated[str, typer.Option(help="How far back to replay (e.g. 7d, 12h).")] = "7d",
          config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """Replay recent routing decisions against the current rules and print what would change."""
    from datetime import UTC, datetime

    from crmhub.config import parse_duration
    from crmhub.ops import OpsError, opened
    from crmhub.ops.dry_run import replay_routing

    if not dry_run:
        raise OpsError("only `crmhub route --dry-run` exists: routing itself runs in `crmhub sync` and `crmhub run`")
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise OpsError(f"--since: {exc}") from None
    with opened(config, sandbox=sandbox) as (loaded, store):
        _print_lines(replay_routing(loaded, store, since=window, now=datetime.now(UTC)).lines())


@app.command()
@for_people
def report(since: Annotated[str, typer.Option(help="How far back (e.g. 7d, 12h).")] = "7d",
           by: Annotated[str, typer.Option(help="Group by channel, queue, crm or day.")] = "channel",
           as_json: Annotated[bool, typer.Option("--json", help="The figures as JSON instead of the table.")] = False,
           as_csv: Annotated[bool, typer.Option("--csv", help="The figures as CSV instead of the table.")] = False,
           html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report "
                                                                    "with charts to this file.",
                                                     dir_okay=False)] = None,
           config: ConfigOption = None) -> None:
    """Support figures: volume, first response, resolution, first-contact resolution, reopens, backlog,
    reply failures (docs/metrics.md)."""
    from datetime import UTC, datetime

    from rich.console import Console

    from crmhub.config import parse_duration
    from crmhub.ops import OpsError, opened
    from crmhub.report import DIMENSIONS
    from crmhub.report.build import report_for
    from crmhub.report.render import print_table, to_csv, to_json

    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise OpsError(f"--since: {exc}") from None
    if by not in DIMENSIONS:
        raise OpsError(f"--by: unknown grouping {by!r}; use one of {', '.join(DIMENSIONS)}")
    if as_json and as_csv:
        raise OpsError("--json and --csv: pick one")
    now = datetime.now(UTC)
    with opened(config) as (loaded, store):
        figures = report_for(loaded, store, since=now - window, now=now, by=(by,))
        if html is not None:
            from crmhub.report.html import to_html

            daily = report_for(loaded, store, since=now - window, now=now, by=("channel", "day"))
            try:
                html.write_text(to_html(figures, daily, csat=figures.csat_distribution), encoding="utf-8")
            except OSError as exc:
                raise OpsError(f"--html: cannot write {html}: {exc.strerror}") from None
    if as_json:
        typer.echo(to_json(figures))
    elif as_csv:
        typer.echo(to_csv(figures), nl=False)
    else:
        print_table(figures, Console(soft_wrap=True))
    if html is not None and not (as_json or as_csv):
        typer.echo(f"HTML report written to {html}")


deadletters_app = typer.Typer(no_args_is_help=True, help="List, show, replay or discard dead letters.")
app.add_typer(deadletters_app, name="deadletters")


@deadletters_app.command("list")
@for_people
def deadletters_list(source: Annotated[str | None, typer.Option(
                         help="Only this source (twilio, x, deliver:salesforce, or deliver for every CRM; "
                              "reply:zendesk, or reply for replies that did not reach the customer).")] = None,
                     config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """Open dead letters: id, source, item, reason, age."""
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from crmhub.ops import opened
    from crmhub.ops.deadletters import list_open

    with opened(config, sandbox=sandbox) as (_, store), store.transaction() as session:
        rows = list_open(session, source=source)
    console = Console(soft_wrap=True)
    if not rows:
        console.print("No open dead letters.", highlight=False)
        return
    table = Table(title=f"Open dead letters ({len(rows)})")
    for column in ("id", "source", "item", "reason", "age"):  # only the reason wraps
        table.add_column(column, overflow="fold", no_wrap=column != "reason", min_width=20 if column == "reason" else None)
    now = datetime.now(UTC)
    for row in rows:
        table.add_row(*row.line(now))
    console.print(table)


@deadletters_app.command("show")
@for_people
def deadletters_show(dead_letter: Annotated[int, typer.Argument(help="The dead letter's id.")],
                     config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """One dead letter with its payload (message text redacted)."""
    from crmhub.ops import opened
    from crmhub.ops.deadletters import show

    with opened(config, sandbox=sandbox) as (_, store), store.transaction() as session:
        _print_lines(show(session, dead_letter))


@deadletters_app.command("replay")
@for_people
def deadletters_replay(dead_letter: Annotated[int, typer.Argument(help="The dead letter's id.")],
                       config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """Deliveries: back to pending for the next sync. Source items: resolved once they are in the ledger."""
    from datetime import UTC, datetime

    from crmhub.ops import OpsError, opened
    from crmhub.ops.deadletters import replay

    with opened(config, sandbox=sandbox) as (_, store), store.transaction() as session:
        done = replay(session, dead_letter, now=datetime.now(UTC))
    if not done.resolved:
        raise OpsError(done.message)
    _print_lines([done.message])


@deadletters_app.command("discard")
@for_people
def deadletters_discard(dead_letter: Annotated[int, typer.Argument(help="The dead letter's id.")],
                        reason: Annotated[str | None, typer.Option(help="Why, kept with the dead letter.")] = None,
                        config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """Mark a dead letter resolved as 'discarded'."""
    from datetime import UTC, datetime

    from crmhub.ops import opened
    from crmhub.ops.deadletters import discard

    with opened(config, sandbox=sandbox) as (_, store), store.transaction() as session:
        _print_lines([discard(session, dead_letter, now=datetime.now(UTC), reason=reason)])


conflicts_app = typer.Typer(no_args_is_help=True,
                            help="Records of one CRM that turned out to be one customer: list, resolve.")
app.add_typer(conflicts_app, name="conflicts")


@conflicts_app.command("list")
@for_people
def conflicts_list(include_resolved: Annotated[bool, typer.Option("--all", help="Resolved ones too.")] = False,
                   as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
                   config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """Open conflicts: the records, the one crmhub writes to, and the identities that tie them."""
    from rich.console import Console
    from rich.table import Table

    from crmhub.ops import opened
    from crmhub.ops.conflicts import list_conflicts

    with opened(config, sandbox=sandbox) as (_, store), store.transaction() as session:
        rows = list_conflicts(session, include_resolved=include_resolved)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    console = Console(soft_wrap=True)
    if not rows:
        console.print("No open conflicts.", highlight=False)
        return
    table = Table(title=f"Conflicts ({len(rows)})")
    for column in ("id", "crm", "records", "writing to", "identities", "state"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(str(row.id), row.crm, "\n".join(row.record_ids), row.primary_id, "\n".join(row.identities),
                      row.resolution or "open")
    console.print(table)
    console.print("Merge the records in the CRM, or pick one: crmhub conflicts resolve ID --keep RECORD_ID",
                  highlight=False)


@conflicts_app.command("resolve")
@for_people
def conflicts_resolve(conflict: Annotated[int, typer.Argument(help="The conflict's id.")],
                      keep: Annotated[str, typer.Option(help="The record crmhub writes to from now on.")],
                      config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """Pick the record to keep writing to; crmhub moves what it wrote onto it."""
    from datetime import UTC, datetime

    from crmhub.ops import opened
    from crmhub.ops.conflicts import resolve

    with opened(config, sandbox=sandbox) as (_, store), store.transaction() as session:
        _print_lines([resolve(session, conflict, keep, now=datetime.now(UTC))])


links_app = typer.Typer(no_args_is_help=True,
                        help="Identities customers claimed in messages (\"I'm @jane\"): list, confirm, reject; "
                             "the link log of joins and splits: list PERSON, show, undo.")
app.add_typer(links_app, name="links")


@links_app.command("list")
@for_people
def links_list(who: Annotated[str | None, typer.Argument(
                   help="A customer: a person id or an identity (phone:+1..., email:..., x:ID, x:@handle). "
                        "Given: the link log of that customer's joins and splits; else the link suggestions.",
                   show_default=False)] = None,
               status: Annotated[str | None, typer.Option(
                   help="Only suggestions in this status: pending, confirmed or rejected.")] = None,
               as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
               config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """Link suggestions (who claimed which identity, and what was decided); with PERSON|IDENTITY, the link log."""
    from rich.console import Console
    from rich.table import Table

    from crmhub.ops import OpsError, opened
    from crmhub.ops.links import list_links
    from crmhub.store.links import LinkStatus

    if who is not None:
        if status is not None:
            raise OpsError("--status filters link suggestions; leave it out with PERSON|IDENTITY (the link log)")
        _links_log(who, as_json=as_json, config=config, sandbox=sandbox)
        return
    try:
        wanted = LinkStatus(status) if status is not None else None
    except ValueError:
        raise OpsError(f"--status: unknown status {status!r}; use pending, confirmed or rejected") from None
    with opened(config, sandbox=sandbox) as (_, store), store.transaction() as session:
        rows = list_links(session, wanted)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    console = Console(soft_wrap=True)
    if not rows:
        console.print(f"No {wanted.value + ' ' if wanted else ''}link suggestions.", highlight=False)
        return
    table = Table(title=f"Link suggestions ({len(rows)})")
    for column in ("id", "stated in", "sender", "claims", "held by", "status", "decided"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(str(row.id), row.stated_in, row.sender, row.claimed, row.held_by, row.status, row.decided)
    console.print(table)
    if any(row.status == "pending" for row in rows):
        console.print("Once checked with the customer: crmhub links confirm ID (joins them) or crmhub links reject ID",
                      highlight=False)


@links_app.command("confirm")
@for_people
def links_confirm(link: Annotated[int, typer.Argument(help="The suggestion's id (crmhub links list).")],
                  config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """Join the claimed identity to the sender: their histories merge onto one record per CRM at the next sync."""
    from datetime import UTC, datetime

    from crmhub.app import build_identity_policy
    from crmhub.ops import opened
    from crmhub.ops.links import confirm

    with opened(config, sandbox=sandbox) as (loaded, store), store.transaction() as session:
        _print_lines([confirm(session, link, policy=build_identity_policy(loaded),
                              crms=loaded.settings.crms.enabled_names(), now=datetime.now(UTC))])


def _links_log(who: str, *, as_json: bool, config: Path | None, sandbox: bool) -> None:
    """`links list PERSON|IDENTITY`: the customer's link events, oldest first."""
    from crmhub.ops import opened
    from crmhub.ops.linklog import list_events, person_of

    with opened(config, sandbox=sandbox) as (loaded, store), store.transaction() as session:
        person = person_of(session, who, default_region=loaded.identities.default_region)
        events = list_events(session, person)
    if as_json:
        typer.echo(json.dumps({"person": person, "events": [e.as_dict() for e in events]}, indent=2))
        return
    if not events:
        _print_lines([f"Person {person}: no joins or splits; crmhub has never joined this customer with another."])
        return
    _print_lines([f"Link log of person {person} ({len(events)} events):", *(e.line() for e in events),
                  "crmhub links show ID: what an event moved; crmhub links undo ID: split a wrong join."])


@links_app.command("show")
@for_people
def links_show(event: Annotated[int, typer.Argument(help="The link event's id (crmhub links list PERSON).")],
               as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
               config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """One link event: what it joined or split, on what evidence, by whom, and the rows it moved."""
    from crmhub.ops import opened
    from crmhub.ops.linklog import show

    with opened(config, sandbox=sandbox) as (_, store), store.transaction() as session:
        view, moved = show(session, event)
    if as_json:
        typer.echo(json.dumps({**view.as_dict(), "moved_rows": moved}, indent=2))
        return
    _print_lines([view.line(), *(f"  moved: {line}" for line in moved or ["nothing"])])


@links_app.command("undo")
@for_people
def links_undo(event: Annotated[int, typer.Argument(help="The join event's id (crmhub links list PERSON).")],
               by: Annotated[str, typer.Option(help="Who undoes it, for the log.")] = "admin via CLI",
               config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """Split a wrong join: the identities, records and history it moved go back, in every CRM at the next sync."""
    from datetime import UTC, datetime

    from crmhub.ops import opened
    from crmhub.ops.linklog import undo

    with opened(config, sandbox=sandbox) as (loaded, store), store.transaction() as session:
        _print_lines(undo(session, event, crms=loaded.settings.crms.enabled_names(), now=datetime.now(UTC), by=by))


@links_app.command("reject")
@for_people
def links_reject(link: Annotated[int, typer.Argument(help="The suggestion's id (crmhub links list).")],
                 config: ConfigOption = None, sandbox: SandboxOption = False) -> None:
    """The claim is false: nothing joins, and it is never suggested again."""
    from datetime import UTC, datetime

    from crmhub.ops import opened
    from crmhub.ops.links import reject

    with opened(config, sandbox=sandbox) as (_, store), store.transaction() as session:
        _print_lines([reject(session, link, now=datetime.now(UTC))])


def _print_lines(lines: list[str]) -> None:
    """Lines as they are (no markup, no wrapping), through rich."""
    from rich.console import Console

    console = Console(soft_wrap=True, highlight=False)
    for line in lines:
        console.print(line, markup=False)


def _hub(config: Path | None) -> Any:
    """The configured hub, logs set up as settings say (a context manager closing the store)."""
    from crmhub.app import build_hub
    from crmhub.config import load_config

    loaded = load_config(config)
    configure_logs(loaded.settings.log.level, loaded.settings.log.format)
    return build_hub(loaded)


def _summary(config: Any) -> str:
    crms = ", ".join(config.settings.crms.enabled_names()) or "no CRM"
    channels = ", ".join(config.settings.channels.enabled_names()) or "no channel"
    return f"CRMs: {crms}; channels: {channels}"


def main() -> None:
    """Console-script entry point."""
    configure_logs()
    app(prog_name="crmhub")


if __name__ == "__main__":
    sys.exit(main())


plugins_app = typer.Typer(no_args_is_help=True, help="The CRM plugins (agents' panel): build what you upload.")
app.add_typer(plugins_app, name="plugins")


@plugins_app.command("package")
@for_people
def plugins_package(
        name: Annotated[str, typer.Argument(help="zendesk, salesforce or hubspot (a folder in plugins/).")],
        url: Annotated[str, typer.Option(help="crmhub's public URL, as the CRM reaches it (webhooks.public_url).")],
        out: Annotated[Path, typer.Option(help="Where to write crmhub-<name>.zip.")] = Path("dist"),
        plugins_dir: Annotated[Path, typer.Option(help="The plugins' sources (a crmhub checkout's plugins/).")]
        = Path("plugins"),
        contact_email: Annotated[str | None, typer.Option(help="Salesforce: the connected app's contact email.")]
        = None) -> None:
    """Build a plugin's uploadable zip for your crmhub URL; its README says how to install it."""
    from crmhub.plugins import package

    target = package(name, url=url, plugins_dir=plugins_dir, out=out, contact_email=contact_email)
    typer.echo(f"Wrote {target}; install it as {plugins_dir / name / 'README.md'} says.")
