"""No log level prints a secret: every provider flow run with logging exactly as `regcred run --debug` sets it up.

Logging is configured by ``regcred.logs.configure(debug=True)``, the function `regcred run` calls; everything
logged (caplog, DEBUG on the root) and printed (capsys) while the providers mint is then searched for
every secret involved — source keys, PATs, private keys, JWTs, minted tokens, STS keys — and their base64
forms (standard and URL-safe, at every alignment, alone and as ``user:password``). Records of moto's
server side (it stands in for AWS in this process) are not the operator's and are left out.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from pathlib import Path
from typing import Any

import kopf
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.sts.models import sts_backends

from regcred import cli, logs
from regcred.models import AcrSpec, EcrSpec, GarSpec, GhcrAppSpec, GhcrSpec, SecretRef
from regcred.providers.acr import AcrProvider
from regcred.providers.base import Token
from regcred.providers.ecr import EcrProvider
from regcred.providers.gar import GarProvider
from regcred.providers.ghcr import GhcrProvider
from tests.log_scan import assert_nothing_printed
from tests.providers import test_acr
from tests.providers.azure_server import App
from tests.providers.azure_server import running as azure_running
from tests.providers.ecr_public_server import FakeEcrPublic
from tests.providers.ecr_public_server import serve as serve_ecr_public
from tests.providers.github_server import FakeGitHub, Pat, serve
from tests.providers.google_server import FakeGoogle, new_rsa_key, running
from tests.providers.test_ecr import secret_reader

REGION = "eu-west-1"
ROLE_ACCOUNT = "111111111111"
AWS_KEY_ID = "AKIAREGCREDLOGTEST01"
AWS_SECRET = "l0g-scan-aws-secret-access-key-do-not-print"
AWS_SESSION = "l0g-scan-aws-session-token-do-not-print"
PAT = "ghp_L0gSc4nT3stT0k3nD0N0tPr1nt00000000000"
APP_ID = "12345"
INSTALLATION_ID = "67890"
EMAIL = "puller@my-project.iam.gserviceaccount.com"
SERVER_SIDE = ("moto", "werkzeug", "flask")  # the emulated AWS, running in this process


def token_secrets(token: Token, name: str) -> dict[str, str]:
    return {
        f"{name} password": token.password,
        f"{name} user:password": f"{token.username}:{token.password}",
    }


# -- the flows --------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("clean_aws_env")
def test_ecr_with_keys_from_a_secret_and_an_assumed_role_logs_no_secret(
    moto_url: str, debug_logging: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = SecretRef(namespace="regcred-system", name="aws-pull-keys")
    read_secret = secret_reader({(keys.namespace, keys.name): {
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID.encode(),
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET.encode(),
        "AWS_SESSION_TOKEN": AWS_SESSION.encode(),
    }})
    spec = EcrSpec(region=REGION, credentials_secret_ref=keys,
                   assume_role_arn=f"arn:aws:iam::{ROLE_ACCOUNT}:role/ecr-pull")

    token = EcrProvider(spec, ecr_endpoint_url=moto_url, sts_endpoint_url=moto_url).mint(read_secret)

    assert token.hosts == (f"{ROLE_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",)  # minted with the role's keys
    assumed = sts_backends[ROLE_ACCOUNT]["aws"].assumed_roles[-1]
    assert_nothing_printed(debug_logging, capsys, server_side=SERVER_SIDE, secrets={
        "the Secret's secret access key": AWS_SECRET,
        "the Secret's session token": AWS_SESSION,
        "the role's secret access key": assumed.secret_access_key,
        "the role's session token": assumed.session_token,
        "the ECR authorization token": base64.b64encode(f"{token.username}:{token.password}".encode()).decode(),
        **token_secrets(token, "ECR"),
    })


@pytest.mark.usefixtures("clean_aws_env")
def test_ecr_public_with_an_assumed_role_logs_no_secret(
    moto_url: str, debug_logging: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = SecretRef(namespace="regcred-system", name="aws-pull-keys")
    read_secret = secret_reader({(keys.namespace, keys.name): {
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID.encode(), "AWS_SECRET_ACCESS_KEY": AWS_SECRET.encode()}})
    spec = EcrSpec(region="us-east-1", credentials_secret_ref=keys, public=True,
                   assume_role_arn=f"arn:aws:iam::{ROLE_ACCOUNT}:role/ecr-public-pull")

    with serve_ecr_public(FakeEcrPublic()) as ecr_public:
        token = EcrProvider(spec, sts_endpoint_url=moto_url, ecr_public_endpoint_url=ecr_public.url).mint(read_secret)

    assert token.hosts == ("public.ecr.aws",)
    assumed = sts_backends[ROLE_ACCOUNT]["aws"].assumed_roles[-1]
    assert_nothing_printed(debug_logging, capsys, server_side=SERVER_SIDE, secrets={
        "the Secret's secret access key": AWS_SECRET,
        "the role's secret access key": assumed.secret_access_key,
        "the role's session token": assumed.session_token,
        **token_secrets(token, "ECR Public"),
    })


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.mark.usefixtures("no_proxy")
def test_ghcr_pat_and_app_log_no_secret(debug_logging: pytest.LogCaptureFixture,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = app_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = app_key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    fake = FakeGitHub(app_keys={APP_ID: public}, installations={INSTALLATION_ID},
                      pats={PAT: Pat(login="ci-bot", expiration="2099-12-31 23:59:59 UTC")})
    pat_ref = SecretRef(namespace="regcred-system", name="ghcr-pat", key="token")
    key_ref = SecretRef(namespace="regcred-system", name="gh-app", key="private-key.pem")
    read_secret = secret_reader({("regcred-system", "ghcr-pat"): {"token": PAT.encode()},
                          ("regcred-system", "gh-app"): {"private-key.pem": pem.encode()}})

    with serve(fake) as github:
        pat_token = GhcrProvider(GhcrSpec(username="ci-bot", token_secret_ref=pat_ref),
                                 api_url_override=github.api_url).mint(read_secret)
        app = GhcrAppSpec(app_id=APP_ID, installation_id=INSTALLATION_ID, private_key_secret_ref=key_ref,
                          api_url=github.api_url)
        app_token = GhcrProvider(GhcrSpec(app=app)).mint(read_secret)

    assert pat_token.password == PAT
    assert app_token.password == github.issued[-1]
    jwts = [r.headers["authorization"].removeprefix("Bearer ") for r in github.requests if r.method == "POST"]
    assert jwts
    assert_nothing_printed(debug_logging, capsys, server_side=SERVER_SIDE, secrets={
        "the PAT": PAT,
        "the App's private key": pem,
        **{f"the App JWT #{i}": jwt for i, jwt in enumerate(jwts)},
        **{f"the App JWT #{i} signature": jwt.rsplit(".", 1)[1] for i, jwt in enumerate(jwts)},
        **token_secrets(pat_token, "PAT"),
        **token_secrets(app_token, "installation token"),
    })


@pytest.mark.usefixtures("no_proxy")
def test_gar_service_account_key_logs_no_secret(debug_logging: pytest.LogCaptureFixture,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    private_key, public_key = new_rsa_key()
    ref = SecretRef(namespace="regcred-system", name="gcp-key", key="key.json")
    google: FakeGoogle
    for google in running():
        google.add_service_account(EMAIL, public_key)
        key = {
            "type": "service_account", "project_id": "my-project",
            "private_key_id": "0123456789abcdef0123456789abcdef01234567", "private_key": private_key,
            "client_email": EMAIL, "client_id": "112233445566778899000", "token_uri": google.token_uri,
            "universe_domain": "googleapis.com",
        }
        read_secret = secret_reader({(ref.namespace, ref.name): {"key.json": json.dumps(key).encode()}})
        token = GarProvider(GarSpec(registries=("europe-docker.pkg.dev",), credentials_secret_ref=ref)).mint(
            read_secret)
        assertions = [urllib.parse.parse_qs(seen.body.decode()).get("assertion", [""])[0] for seen in google.seen]

    assert token.password
    assert [a for a in assertions if a]
    assert_nothing_printed(debug_logging, capsys, server_side=SERVER_SIDE, secrets={
        "the service account's private key": private_key,
        **{f"the JWT assertion #{i}": a for i, a in enumerate(assertions) if a},
        **{f"the JWT assertion #{i} signature": a.rsplit(".", 1)[1] for i, a in enumerate(assertions) if a},
        **token_secrets(token, "GAR access token"),
    })


@pytest.mark.usefixtures("no_proxy")
def test_acr_service_principal_and_workload_identity_log_no_secret(
    debug_logging: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client_secret = "Zq8~l0g-scan-client-secret-do-not-print"
    federated = "eyJhbGciOiJSUzI1NiJ9.l0g-scan-federated-token-do-not-print.c2ln"
    pem, certificate = test_acr.certificate_pem()
    ref = SecretRef(namespace="regcred-system", name="acr-sp")
    token_file = tmp_path / "federated-token"
    token_file.write_text(federated)
    tokens = []
    for azure in azure_running(tmp_path):
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(azure.ca_bundle))
        azure.apps[test_acr.CLIENT] = App(tenant=test_acr.TENANT, client_secret=client_secret, certificate=certificate,
                                          federated_token=federated)

        def acr(url: str, **spec: Any) -> AcrProvider:
            return AcrProvider(AcrSpec(registry=test_acr.REGISTRY, tenant_id=test_acr.TENANT,
                                       client_id=test_acr.CLIENT, **spec),
                               authority_host=url, exchange_url=url,
                               environ={"AZURE_FEDERATED_TOKEN_FILE": str(token_file)})

        for data in ({"client-secret": client_secret.encode()}, {"certificate.pem": pem}):
            tokens.append(acr(azure.url, identity="ServicePrincipal", credentials_secret_ref=ref).mint(
                secret_reader({(ref.namespace, ref.name): data})))
        tokens.append(acr(azure.url).mint(secret_reader({})))
        assertions = [seen.form["client_assertion"] for seen in azure.seen if "client_assertion" in seen.form]
        access_tokens = list(azure.issued)

    assert [token.password for token in tokens] == azure.refresh_tokens
    assert len(assertions) == 2  # the certificate's signed one and the federated token
    assert_nothing_printed(debug_logging, capsys, server_side=SERVER_SIDE, secrets={
        "the client secret": client_secret,
        "the certificate's private key": pem.decode().split("-----END PRIVATE KEY-----")[0],
        "the federated token": federated,
        **{f"the client assertion #{i}": a for i, a in enumerate(assertions)},
        **{f"the Entra ID access token #{i}": a for i, a in enumerate(access_tokens)},
        **{key: value for i, token in enumerate(tokens) for key, value in token_secrets(token, f"ACR #{i}").items()},
    })


# -- `regcred run` uses that configuration -------------------------------------------------------------------


def test_regcred_run_debug_holds_the_libraries_at_info(
    monkeypatch: pytest.MonkeyPatch, debug_logging: pytest.LogCaptureFixture
) -> None:
    logging.getLogger("botocore").setLevel(logging.NOTSET)
    logging.getLogger("botocore.parsers").setLevel(logging.DEBUG)  # set low on its own: inherits again
    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "run", lambda **kwargs: ran.append(kwargs))
    monkeypatch.setattr(cli, "startup_problem", lambda: None)  # no cluster here: only the logging is looked at

    assert cli.main(["run", "--debug"]) == 0

    assert ran
    assert logging.getLogger().level == logging.DEBUG  # the operator's own messages at DEBUG
    assert logging.getLogger("regcred").isEnabledFor(logging.DEBUG)
    for name in (*logs.QUIET_LOGGERS, "botocore.parsers", "botocore.endpoint", "urllib3.connectionpool",
                 "google.auth.transport.requests", "kubernetes.client.rest"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
    logging.getLogger("botocore.parsers").setLevel(logging.NOTSET)
