"""Commands that simulate: run, append, optimize, scenarios, bench."""

from __future__ import annotations
