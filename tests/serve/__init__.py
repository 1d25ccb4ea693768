"""Tests of the service (`serve/`), one module per subject: `tests.serve.*`, so the top-level
`serve` package is never shadowed."""
