"""The HubSpot route table: method and path to handler (the source of the coverage docs).

Object types may be named by plural, singular or type id ("contacts",
"contact", "0-1"), as HubSpot accepts them; `guarded` answers any other type
(deals, custom objects...) with the "not emulated" body. Pipelines exist for
tickets only.
"""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.wrappers import Response

from crmhub.sandbox._server import Route
from crmhub.sandbox.hubspot.catalog import object_type
from crmhub.sandbox.hubspot.responses import HubSpotResponses, guarded

OBJ, FROM, TO = "<object_type>", "<from_type>", "<to_type>"
Entry = tuple[str, str, Callable[..., Response]]


def _objects(r: HubSpotResponses) -> list[Entry]:
    objects = f"/crm/v3/objects/{OBJ}"
    return [
        ("POST", objects, r.create_object),
        ("GET", objects, r.list_objects),
        ("GET", f"{objects}/<object_id>", r.get_object),
        ("PATCH", f"{objects}/<object_id>", r.update_object),
        ("DELETE", f"{objects}/<object_id>", r.archive_object),
        ("POST", f"{objects}/batch/create", r.batch_create),
        ("POST", f"{objects}/batch/read", r.batch_read),
        ("POST", f"{objects}/batch/update", r.batch_update),
        ("POST", f"{objects}/batch/upsert", r.batch_upsert),
        ("POST", f"{objects}/batch/archive", r.batch_archive),
        ("POST", f"{objects}/search", r.search_objects),
        ("POST", f"{objects}/merge", r.merge_objects),
        ("GET", f"/crm/v3/properties/{OBJ}", r.list_properties),
        ("POST", f"/crm/v3/properties/{OBJ}", r.create_property),
        ("GET", f"/crm/v3/properties/{OBJ}/<property_name>", r.get_property),
    ]


def _associations(r: HubSpotResponses) -> list[Entry]:
    pair = f"/crm/v4/objects/{FROM}/<from_id>/associations"
    batch = f"/crm/v4/associations/{FROM}/{TO}/batch"
    return [
        ("PUT", f"{pair}/default/{TO}/<to_id>", r.create_default_association),
        ("PUT", f"{pair}/{TO}/<to_id>", r.create_association),
        ("DELETE", f"{pair}/{TO}/<to_id>", r.archive_association),
        ("GET", f"{pair}/{TO}", r.list_associations),
        ("POST", f"{batch}/create", r.batch_create_associations),
        ("POST", f"{batch}/associate/default", r.batch_default_associations),
        ("POST", f"{batch}/read", r.batch_read_associations),
        ("POST", f"{batch}/archive", r.batch_archive_associations),
    ]


def _pipelines(r: HubSpotResponses) -> list[Entry]:
    pipelines = f"/crm/v3/pipelines/{OBJ}"
    return [
        ("GET", pipelines, r.list_pipelines),
        ("GET", f"{pipelines}/<pipeline_id>", r.get_pipeline),
        ("GET", f"{pipelines}/<pipeline_id>/stages", r.list_stages),
        ("GET", f"{pipelines}/<pipeline_id>/stages/<stage_id>", r.get_stage),
    ]


def _owners(r: HubSpotResponses) -> list[Entry]:
    return [("GET", "/crm/v3/owners/", r.list_owners), ("GET", "/crm/v3/owners/<owner_id>", r.get_owner)]


def route_table(r: HubSpotResponses) -> list[Route]:
    """Every endpoint the HubSpot emulator answers, each handler guarded for vendor errors."""
    tickets = object_type("tickets").aliases
    routes = [Route((m,), rule, guarded(h)) for m, rule, h in _objects(r) + _associations(r) + _owners(r)]
    routes += [Route((m,), rule, guarded(h, tickets)) for m, rule, h in _pipelines(r)]
    return routes
