"""Every SOS canonical URL, derived from the one setting that names the base.

The shipped profiles and terminology are written under DEFAULT_BASE and moved under the
deployment's base when loaded (terminology/rebase.py, interactions/load.py). Code that looks
for an SOS extension or system in stored resources must therefore ask this module, never
spell a URL: a literal would silently stop matching on a deployment with its own base (an
access check that misses the lifecycle extension fails open).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BASE = "https://sos.example.org/fhir"


@dataclass(frozen=True)
class Canonicals:
    base: str = DEFAULT_BASE

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", self.base.rstrip("/"))

    def structure_definition(self, name: str) -> str:
        return f"{self.base}/StructureDefinition/{name}"

    def naming_system(self, name: str) -> str:
        return f"{self.base}/sid/{name}"

    def code_system(self, name: str) -> str:
        return f"{self.base}/CodeSystem/{name}"

    @property
    def entry_lifecycle(self) -> str:
        """The extension carrying an entry's status in the inclusion procedure."""
        return self.structure_definition("sos-entry-lifecycle")

    @property
    def departement(self) -> str:
        """The address extension giving the département's INSEE code."""
        return self.structure_definition("sos-departement")

    @property
    def search_chain(self) -> str:
        """The SearchParameter extension naming the chain a parameter stands for (search/registry.py)."""
        return self.structure_definition("sos-search-chain")

    @property
    def oauth_client(self) -> str:
        """The identifier system of the server's OAuth clients (AuditEvent agents)."""
        return self.naming_system("oauth-client")
