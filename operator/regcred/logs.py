"""The one place where `regcred run` (and anything else running the operator) sets up logging.

kopf's ``configure(debug=...)`` puts the root logger at DEBUG, and at DEBUG the HTTP and
cloud libraries log whole requests and responses: botocore the ECR authorization token and STS's secret
keys and session tokens, urllib3 and requests the URLs, google-auth the token endpoint's answers, the
Kubernetes client every Secret it reads. No log level of the operator may print a secret, so those
libraries are held at INFO or above whatever the operator's own level is: their loggers' levels are
raised, and the root handlers drop any of their records below INFO that still get through (a child
logger somebody set to DEBUG on its own).

Whatever gets logged, by the operator or a library, is scrubbed of the secrets the operator holds
(regcred.redact.HELD) by a filter on the root handlers and on kopf's object logger, whose own handler posts
records as Kubernetes Events.
"""

from __future__ import annotations

import logging

import kopf

from regcred.redact import HELD, redact

# Libraries that log request/response bodies, headers or credentials at DEBUG.
QUIET_LOGGERS: tuple[str, ...] = (
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "requests",
    "requests_oauthlib",
    "oauthlib",
    "google",  # google.auth, google.oauth2, google.auth.transport.requests
    "google_auth_httplib2",
    "azure",  # azure.identity, azure.core's HTTP logging policy (bodies with logging_enable)
    "msal",
    "kubernetes",  # kubernetes.client.rest logs every response body at DEBUG
    "aiohttp",
    "httpx",
    "httpcore",
    "jwt",
)
QUIET_LEVEL = logging.INFO


def _quiet(name: str) -> bool:
    return any(name == quiet or name.startswith(quiet + ".") for quiet in QUIET_LOGGERS)


class QuietLibraries(logging.Filter):
    """Drops the records of the libraries above that are below INFO, whichever logger let them through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= QUIET_LEVEL or not _quiet(record.name)


class RedactHeld(logging.Filter):
    """Hides the held secrets in a log record: its message (arguments merged in) and its traceback.

    Records are shared by every handler that sees them: the record itself is changed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        needles = HELD.needles()
        if not needles:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string is logging's to report
            return True
        if needles.spans(message):
            record.msg, record.args = redact(message), ()
        if record.exc_info:
            traceback = record.exc_text or logging.Formatter().formatException(record.exc_info)
            if needles.spans(traceback):
                record.exc_text, record.exc_info = redact(traceback), None
        return True


class RoutineStops(logging.Filter):
    """Drops kopf's warning that a daemon "is cancelled. Will escalate.": that is how kopf stops the credential
    loops on every shutdown and peering pause (kopf/_core/actions/execution.py), not something for a person."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and str(record.msg).endswith(" is cancelled. Will escalate."))


def quiet_libraries() -> None:
    """Hold every library of QUIET_LOGGERS at INFO or above, whatever the root logger's level."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < QUIET_LEVEL:  # NOTSET included
            logger.setLevel(QUIET_LEVEL)
    for existing in list(logging.root.manager.loggerDict.values()):  # a child set lower inherits again
        if (isinstance(existing, logging.Logger) and _quiet(existing.name) and existing.name not in QUIET_LOGGERS
                and logging.NOTSET < existing.level < QUIET_LEVEL):
            existing.setLevel(logging.NOTSET)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, QuietLibraries) for f in handler.filters):
            handler.addFilter(QuietLibraries())


def redact_held() -> None:
    """Scrub every record the root handlers and kopf's Event poster (on the ``kopf.objects`` logger) see."""
    for filtered in (*logging.getLogger().handlers, logging.getLogger("kopf.objects")):
        if not any(isinstance(f, RedactHeld) for f in filtered.filters):
            filtered.addFilter(RedactHeld())


# At the default level a log line means something happened: kopf's "Handler ... succeeded" for every
# handler run, aiohttp's line per health check and azure-core's ten lines per request to Entra ID (URL,
# headers, status) are held back (to warnings) unless asked for; a replica pausing for, or resuming after,
# another one (kopf's peering) is always said.
CHATTY_LOGGERS: tuple[str, ...] = ("kopf", "aiohttp.access", "azure.core.pipeline.policies.http_logging_policy")
ALWAYS_INFO: tuple[str, ...] = ("kopf._core.engines.peering",)


def configure(*, level: str = "info", log_format: str = "text", verbose: bool = False, debug: bool = False) -> None:
    """Logging as `regcred run` sets it up: the operator's lines at ``level`` (as text or JSON, kopf's
    formatters); kopf's own at warning, at info with ``verbose``, at debug with ``debug``; the libraries held at
    INFO; the held secrets scrubbed."""
    kopf.configure(debug=debug, log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL)
    root_level = logging.DEBUG if debug or verbose else logging.getLevelName(level.upper())
    logging.getLogger().setLevel(root_level)
    chatty_level = logging.DEBUG if debug else logging.INFO if verbose else max(logging.WARNING, root_level)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty_level)
    for name in ALWAYS_INFO:
        logging.getLogger(name).setLevel(min(chatty_level, max(logging.INFO, root_level)))
    if not debug:
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, RoutineStops) for f in handler.filters):
                handler.addFilter(RoutineStops())
    quiet_libraries()
    redact_held()
