"""SalesforceCrm's login through the emulated OAuth token endpoint (simple-salesforce, real HTTP).

The token endpoint answers every error in the OAuth shape, its "try later" ones
included (issue 15 item 4): those are waited out and retried; bad credentials
stay a configuration problem.
"""

from __future__ import annotations

import pytest

from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.connectors.salesforce import ContactObject, SalesforceAuth, SalesforceCrm
from crmhub.errors import AuthError
from crmhub.sandbox import EmulatorServer, Fault

TOKEN_PATH = "/services/oauth2/token"


def make_crm(server: EmulatorServer, secret: str = "sandbox-secret") -> SalesforceCrm:
    return SalesforceCrm(instance_url="https://sandbox.my.salesforce.com",
                         auth=SalesforceAuth("client_credentials", "crmhub-sandbox", secret),
                         objects=[ContactObject("Contact", {"phone": ["Phone"]})], base_url=server.url,
                         retrier=Retrier(RetryPolicy(max_attempts=4), sleep=lambda _: None))


@pytest.mark.parametrize("fault", [Fault("rate_limit", path=TOKEN_PATH),
                                   Fault("server_error", path=TOKEN_PATH, status=503),
                                   Fault("server_error", path=TOKEN_PATH, status=500)])
def test_a_token_endpoint_that_says_try_later_is_retried(salesforce_sandbox: EmulatorServer, fault: Fault) -> None:
    salesforce_sandbox.emulator.faults.add(fault)
    allowance = make_crm(salesforce_sandbox).read_daily_allowance()
    assert allowance is not None and allowance[0] > 0
    assert fault.hits == 1  # refused once, then logged in


def test_bad_credentials_stay_a_configuration_problem(salesforce_sandbox: EmulatorServer) -> None:
    with pytest.raises(AuthError, match="check crms.salesforce.auth"):
        make_crm(salesforce_sandbox, secret="wrong").read_daily_allowance()
