from __future__ import annotations

from django.apps import AppConfig


class ConnguardConfig(AppConfig):
    name = "connguard"
    verbose_name = "connguard"

    def ready(self) -> None:
        from connguard import checks

        checks.register()
