"""Small drivers that ``bench.peers`` runs with the peer systems' own Python (their venvs under
``.cache/peers``): they import the peer's package, never the project's."""
