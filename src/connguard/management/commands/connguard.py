"""``manage.py connguard status|drill``: see what the guard does, and prove it works."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from connguard.management import status
from connguard.management.drill import Drill


class Command(BaseCommand):
    help = (
        "status: settings, server idle limits, connection and counters of each alias, with a "
        "verdict. drill: have the server end a connection and show that the next query recovers."
    )
    # Read-only diagnostics: they must run even when the checks fail.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True)
        status_parser = subcommands.add_parser(
            "status", help="settings, server idle limits, connection, counters and a verdict"
        )
        status_parser.add_argument("--database", help="one alias (default: every alias)")
        status_parser.add_argument("--json", action="store_true", help="print JSON")
        drill_parser = subcommands.add_parser(
            "drill", help="end a connection of the drill's own from the server side, twice"
        )
        drill_parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help=f"the alias (default: {DEFAULT_DB_ALIAS})"
        )

    def _check_alias(self, alias: str) -> None:
        from django.db import connections

        if alias not in connections.settings:
            raise CommandError(
                f"unknown alias {alias!r}: DATABASES has {', '.join(map(repr, connections))}"
            )

    def handle(self, *args: Any, **options: Any) -> None:
        from django.db import connections

        alias = options["database"]
        if alias is not None:
            self._check_alias(alias)
        if options["subcommand"] == "drill":
            Drill(alias, self.stdout.write).run()
            return
        reports = [status.alias_report(name) for name in ([alias] if alias else connections)]
        if options["json"]:
            document = {
                "version": status.REPORT_VERSION,
                "aliases": {report["alias"]: report for report in reports},
            }
            self.stdout.write(json.dumps(document, indent=2))
        else:
            for report in reports:
                self.stdout.write("\n".join(status.render(report)))
        failed = [
            f"{r['alias']!r}: {r['server']['failure']['summary']}"
            for r in reports
            if r["server"] and not r["server"]["reachable"]
        ]
        if failed:
            raise CommandError(
                f"could not read the server of {'; '.join(failed)}. See the connguard.W005 "
                "recommendation above."
            )
