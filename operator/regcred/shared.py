"""Several credentials, one pull Secret: credentials that name the same `secretName` compose one
`.dockerconfigjson` in each namespace they share, each giving the entries of its own registries.

What goes into a shared Secret comes only from the operator's own records: each credential's token in hand,
or its record in the operator's namespace (regcred.store) for one not reconciled yet by this process, and the
RegistryCredentials themselves for who shares and where. Never from the Secret in the target namespace: a
tenant can write that, and must not keep an entry alive or bring one in by editing it.

Who writes: any sharing credential's pass writes the whole composition of each namespace it plans (passes of
credentials sharing a name take turns, regcred.reconcile), so a change of one credential costs one patch per
namespace, and the others' passes then find nothing to write. The label names the first contributor by name,
so that every sharing credential's LIST finds the Secret while any of them is there.

A host given by two credentials in the Secret of a namespace they both select is a conflict: the entry of the
first by name is written, and both report it. Credentials that name the same Secret but select no namespace in
common do not share anything: each writes its own Secrets as if it were alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from regcred import dockerconfig as dc
from regcred.fanout import SecretContent
from regcred.models import CredentialSpec
from regcred.store import StoredToken
from regcred.view import NamespaceInfo, selected


@dataclasses.dataclass(frozen=True)
class Contribution:
    """One credential's token as the operator serves it (as its store records it), and where it selects."""

    spec: CredentialSpec
    served: StoredToken

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(dc.auths(self.served.content) or ())


class Composer:
    """What the Secret named ``secret_name`` must hold in each namespace, for one pass (or one watch event)."""

    def __init__(self, secret_name: str, contributions: Iterable[Contribution], members: Iterable[str],
                 namespace: Callable[[str], NamespaceInfo | None], watch_namespaces: tuple[str, ...]) -> None:
        self.secret_name = secret_name
        self.contributions = sorted(contributions, key=lambda c: c.name)  # the first by name wins a host
        self.members = frozenset(members) | {c.name for c in self.contributions}
        self._namespace = namespace  # what the view knows of a namespace
        self._watch_namespaces = watch_namespaces
        self._contents: dict[tuple[str, ...], SecretContent] = {}  # namespaces with the same contributors share one
        # Found by `wanted`: who writes entries beside the credential, and the hosts given twice in one Secret.
        self._beside: set[str] = set()
        self._conflicts: dict[str, set[str]] = {}
        self._noted: set[tuple[str, ...]] = set()

    def contributors(self, namespace: str, own: str | None = None, own_targets: frozenset[str] = frozenset()
                     ) -> list[Contribution]:
        """The credentials whose entries belong in this namespace's Secret. ``own``: the credential whose pass
        this is, placed by its own target list rather than by the view."""
        info = self._namespace(namespace) if any(c.name != own for c in self.contributions) else None
        return [c for c in self.contributions
                if (namespace in own_targets if c.name == own
                    else info is not None and selected(c.spec, info, self._watch_namespaces))]

    def wanted(self, own: str, targets: Iterable[str], listed: Iterable[str]) -> dict[str, SecretContent]:
        """{namespace: content} for the credential ``own``'s targets and the namespaces where a Secret of the name
        is (``listed``); a namespace left out holds no Secret of the name any more."""
        own_targets = frozenset(targets)
        wanted = {}
        for namespace in own_targets | frozenset(listed):
            contributors = self.contributors(namespace, own, own_targets)
            content = self.content(contributors)
            if content is not None:
                wanted[namespace] = content
            if namespace in own_targets and len(contributors) > 1:
                self._note_beside(own, contributors)
        return wanted

    def _note_beside(self, own: str, contributors: Sequence[Contribution]) -> None:
        key = tuple(c.name for c in contributors)
        if key in self._noted:
            return
        self._noted.add(key)
        mine = next(c for c in contributors if c.name == own)
        for other in contributors:
            if other.name != own:
                self._beside.add(other.name)
                for host in mine.hosts & other.hosts:
                    self._conflicts.setdefault(host, set()).add(other.name)

    def content(self, contributors: Sequence[Contribution]) -> SecretContent | None:
        key = tuple(c.name for c in contributors)
        if not key:
            return None
        found = self._contents.get(key)
        if found is None:
            found = self._contents[key] = self._compose(contributors)
        return found

    def _compose(self, contributors: Sequence[Contribution]) -> SecretContent:
        first, served = contributors[0], [c.served for c in contributors]
        if len(contributors) == 1:  # exactly the credential's own Secret, as if it shared with nobody
            return SecretContent(first.name, self.secret_name, served[0].content, served[0].provider_hash,
                                 served[0].minted_at, served[0].expires_at, members=self.members)
        expiries = [s.expires_at for s in served if s.expires_at is not None]
        return SecretContent(
            first.name, self.secret_name, dc.compose([s.content for s in served]),
            hashlib.sha256(",".join(s.provider_hash for s in served).encode()).hexdigest()[:16],
            max(s.minted_at for s in served), min(expiries, default=None),
            members=self.members, shared_by=tuple(c.name for c in contributors))

    def sharing_with(self) -> list[str]:
        """The other credentials whose entries are written beside the credential's own (after `wanted`)."""
        return sorted(self._beside)

    def conflicts(self) -> dict[str, list[str]]:
        """{host: the other credentials giving it too} for the hosts that the credential and another give in the
        Secret of a namespace both select (after `wanted`)."""
        return {host: sorted(others) for host, others in sorted(self._conflicts.items())}


def conflict_message(name: str, secret_name: str, conflicts: Mapping[str, list[str]]) -> str:
    """The sentence both sides of a host conflict report."""
    parts = []
    for host, others in sorted(conflicts.items()):
        first = min([name, *others])
        parts.append(f"{host} is also given by {', '.join(others)}; the entry of {first} is written")
    return (f"Credentials sharing Secret {secret_name} give the same registry: {'; '.join(parts)} (the first "
            "by name). Give each registry in one of them only.")


__all__ = ["Composer", "Contribution", "conflict_message"]
